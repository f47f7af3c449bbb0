"""DatasetBuilderTestCase for chest_xray over the fake download in dummy_data/.

dummy_data/ mimics the real download's quirks (see make_dummy_data.py): each
image also appears in a nested chest_xray/chest_xray/ copy, and __MACOSX/,
._* and .DS_Store files are present; none of them may be counted twice.
"""

import tensorflow_datasets as tfds

from xdn.data.chest_xray import chest_xray_dataset_builder


class ChestXray64Test(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = chest_xray_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['64', 'full']
  SPLITS = {
      'train': 14,
      'val': 2,
      'test': 4,
      'train_main': 13,  # train minus the held-out patient...
      'validation': 1,  # ...whose one image is here.
  }
  # train_main and validation are a partition of train.
  OVERLAPPING_SPLITS = ['train']
  SKIP_CHECKSUMS = True


if __name__ == '__main__':
  tfds.testing.test_main()
