"""chest_xray_sample: 800 NIH ChestX-ray14 radiographs at 64x64, embedded.

The images ship inside this package (images/*.png, labels.csv), so building
needs no download and no manual_dir. Splits are by patient, deterministic:
patients are ordered by the md5 hash of their id and cut 70% / 10% / 20% into
'train' / 'validation' / 'test' (619 / 48 / 133 images; 155 / 22 / 44
patients). No patient is in two splits.
"""

from __future__ import annotations

import csv
import io

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from xdn.data import patient_split
from xdn.io import images as image_io

IMAGE_SIZE = 64
SPLIT_FRACTIONS = {'train': 0.7, 'validation': 0.1, 'test': 0.2}
_DATA_DIR = epath.Path(__file__).parent


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the embedded 64x64 NIH chest X-ray sample."""

  name = 'chest_xray_sample'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  # TFDS 4.9.10's own `code_path` imports the `importlib_resources` backport,
  # which it does not install on Python >= 3.9 (tensorflow/datasets#11212).
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(
                shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8,
                encoding_format='png'),
            'finding': tfds.features.ClassLabel(names=['normal', 'abnormal']),
            'patient_id': tfds.features.Text(),
            'filename': tfds.features.Text(),
        }),
        supervised_keys=('image', 'finding'),
        homepage='https://nihcc.app.box.com/v/ChestXray-NIHCC',
        license='NIH Clinical Center: unrestricted use, with attribution.',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The data ship with the package.
    rows = read_labels(_DATA_DIR / 'labels.csv')
    split_of = patient_split.assign_patients(
        (row['patient_id'] for row in rows), SPLIT_FRACTIONS)
    return {
        split: self._generate_examples(
            [row for row in rows if split_of[row['patient_id']] == split])
        for split in SPLIT_FRACTIONS
    }

  def _generate_examples(self, rows: list[dict[str, str]]):
    for row in rows:
      path = _DATA_DIR / 'images' / row['filename']
      if not path.exists():
        raise FileNotFoundError(
            f'{path} is listed in labels.csv but missing; reinstall xdn.')
      pixels = image_io.decode_grayscale(path.read_bytes(), str(path))
      if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE) or pixels.dtype != np.uint8:
        raise ValueError(
            f'{path} is {pixels.dtype} {pixels.shape}; expected uint8 '
            f'{IMAGE_SIZE}x{IMAGE_SIZE}; reinstall xdn.')
      yield row['filename'], {
          'image': pixels[..., None],
          'finding': row['finding'],
          'patient_id': row['patient_id'],
          'filename': row['filename'],
      }


def read_labels(path: epath.Path) -> list[dict[str, str]]:
  """Rows of labels.csv: dicts with filename, patient_id and finding."""
  rows = list(csv.DictReader(io.StringIO(path.read_text())))
  expected = {'filename', 'patient_id', 'finding'}
  if not rows or not expected <= set(rows[0]):
    raise ValueError(
        f'{path} must be a CSV with columns {sorted(expected)}; reinstall xdn.')
  return rows
