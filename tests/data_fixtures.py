"""Helpers for the data tests: a built chest_xray_sample, fake Kaggle zips."""

from __future__ import annotations

import io
import zipfile

import ml_collections
import numpy as np
from PIL import Image
import pytest

# Official split -> class -> file names of the fake Kaggle download.
KAGGLE_FILES = {
    'train': {
        'NORMAL': ['IM-0115-0001.jpeg', 'IM-0115-0002.jpeg',
                   'IM-0117-0001.jpeg', 'NORMAL2-IM-0927-0001.jpeg', 'NORMAL-28501-0001.jpeg',
                   'IM-0130-0001.jpeg', 'IM-0131-0001.jpeg'],
        'PNEUMONIA': ['person1_bacteria_1.jpeg', 'person1_bacteria_2.jpeg',
                      'person1_virus_6.jpeg', 'person2_virus_3.jpeg',
                      'person3_bacteria_10.jpeg', 'person4_bacteria_14.jpeg',
                      'person5_virus_11.jpeg', 'person6_bacteria_22.jpeg',
                      'person7_bacteria_30.jpeg'],
    },
    'val': {'NORMAL': ['NORMAL2-IM-1427-0001.jpeg'],
            'PNEUMONIA': ['person1946_bacteria_4874.jpeg']},
    'test': {'NORMAL': ['IM-0001-0001.jpeg', 'NORMAL2-IM-0112-0001.jpeg'],
             'PNEUMONIA': ['person100_bacteria_475.jpeg',
                           'person101_virus_187.jpeg']},
}
# Members that must never be read: they would match the layout if followed.
UNSAFE_MEMBERS = ('../chest_xray/train/NORMAL/IM-9999-0001.jpeg',
                  'chest_xray/../../evil/train/NORMAL/IM-9998-0001.jpeg',
                  '/chest_xray/train/NORMAL/IM-9997-0001.jpeg')


def jpeg(seed: int, shape=(48, 40), rgb: bool = False) -> bytes:
  """A small textured JPEG."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:shape[0], :shape[1]]
  pixels = 128 + 80 * np.sin(x / 3 + seed) * np.cos(y / 4)
  pixels = np.clip(pixels + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)
  image = Image.fromarray(pixels)
  if rgb:
    image = Image.merge('RGB', [image, image, image.point(lambda v: v // 2)])
  buf = io.BytesIO()
  image.save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def make_kaggle_zip(path, *, corrupt: str = '', shape=(48, 40)) -> dict:
  """Writes a fake Kaggle zip with the real download's quirks.

  Args:
    path: where to write the zip.
    corrupt: 'split/CLASS/name' of an image to write truncated.
    shape: image shape [H, W].

  Returns:
    `{relative_name: bytes}` of the unique images.
  """
  images = {}
  seed = 0
  for split, classes in KAGGLE_FILES.items():
    for label, names in classes.items():
      for name in names:
        rel = f'{split}/{label}/{name}'
        data = jpeg(seed, shape, rgb=(seed == 3))
        if rel == corrupt:
          data = data[:len(data) // 2]
        images[rel] = data
        seed += 1
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('chest_xray/', b'')
    for rel, data in images.items():
      zf.writestr(f'chest_xray/{rel}', data)
      zf.writestr(f'chest_xray/chest_xray/{rel}', data)  # Nested duplicate.
      zf.writestr(f'__MACOSX/chest_xray/{rel.rsplit("/", 1)[0]}/._'
                  f'{rel.rsplit("/", 1)[1]}', b'\x00\x05\x16\x07 AppleDouble')
    zf.writestr('chest_xray/.DS_Store', b'Bud1')
    zf.writestr('chest_xray/train/NORMAL/._IM-0115-0001.jpeg', b'\x00\x05')
    zf.writestr('chest_xray/train/README.txt', b'not an image')
    for member in UNSAFE_MEMBERS:
      zf.writestr(zipfile.ZipInfo(member), jpeg(99, shape))
  return images


def data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """`config.data` of configs/default.py with a data_dir and overrides."""
  from xdn.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config().data
  config.data_dir = str(data_dir)
  config.update(overrides)
  return config


@pytest.fixture
def sample_dir(sample_data_dir) -> str:
  """A TFDS data_dir with chest_xray_sample built (conftest builds it once)."""
  return sample_data_dir
