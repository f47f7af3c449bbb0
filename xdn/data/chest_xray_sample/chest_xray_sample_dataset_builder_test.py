"""DatasetBuilderTestCase for chest_xray_sample (over the embedded data)."""

import tensorflow_datasets as tfds

from xdn.data.chest_xray_sample import chest_xray_sample_dataset_builder


class ChestXraySampleTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = chest_xray_sample_dataset_builder.Builder
  # The builder reads its own package data, not dummy data; point the test
  # case at that folder so it has one.
  EXAMPLE_DIR = str(DATASET_CLASS.code_path.parent)
  SPLITS = {'train': 619, 'validation': 48, 'test': 133}
  SKIP_CHECKSUMS = True


if __name__ == '__main__':
  tfds.testing.test_main()
