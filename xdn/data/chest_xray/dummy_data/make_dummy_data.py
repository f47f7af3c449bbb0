"""Writes the fake Kaggle download used by chest_xray_dataset_builder_test.

Run from anywhere: `python make_dummy_data.py`. It mimics the real download's
quirks: a nested duplicate `chest_xray/chest_xray/` copy, `__MACOSX/` with
`._*` AppleDouble files, `.DS_Store` files, a non-image file and an RGB JPEG.
"""

import os
import shutil

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {
    'train/NORMAL': ['IM-0115-0001.jpeg', 'IM-0117-0001.jpeg',
                     'NORMAL2-IM-0927-0001.jpeg', 'NORMAL2-IM-0927-0002.jpeg',
                     'NORMAL-28501-0001.jpeg', 'IM-0122-0001.jpeg'],
    'train/PNEUMONIA': ['person1_bacteria_1.jpeg', 'person1_bacteria_2.jpeg',
                        'person1_virus_6.jpeg', 'person2_virus_3.jpeg',
                        'person3_bacteria_10.jpeg', 'person4_bacteria_14.jpeg',
                        'person5_virus_11.jpeg', 'person6_bacteria_22.jpeg'],
    'val/NORMAL': ['NORMAL2-IM-1427-0001.jpeg'],
    'val/PNEUMONIA': ['person1946_bacteria_4874.jpeg'],
    'test/NORMAL': ['IM-0001-0001.jpeg', 'NORMAL2-IM-0112-0001.jpeg'],
    'test/PNEUMONIA': ['person100_bacteria_475.jpeg', 'person101_virus_187.jpeg'],
}
RGB_FILE = 'train/PNEUMONIA/person3_bacteria_10.jpeg'


def _image(rng: np.random.Generator, rgb: bool) -> Image.Image:
  h, w = rng.integers(30, 41, size=2)  # Small, varied, some not square.
  y, x = np.mgrid[:h, :w]
  pixels = 128 + 60 * np.sin(x / rng.uniform(2, 6)) * np.cos(y / rng.uniform(2, 6))
  pixels = np.clip(pixels + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
  if rgb:
    return Image.fromarray(np.stack([pixels, pixels, pixels // 2], -1))
  return Image.fromarray(pixels)


def main():
  for name in ('chest_xray', '__MACOSX'):
    shutil.rmtree(os.path.join(HERE, name), ignore_errors=True)
  rng = np.random.default_rng(0)
  for folder, names in FILES.items():
    for top in ('chest_xray', 'chest_xray/chest_xray'):
      os.makedirs(os.path.join(HERE, top, folder), exist_ok=True)
    for name in names:
      rel = f'{folder}/{name}'
      path = os.path.join(HERE, 'chest_xray', rel)
      _image(rng, rel == RGB_FILE).save(path, 'JPEG', quality=90)
      # The nested duplicate copy of the real download.
      shutil.copy(path, os.path.join(HERE, 'chest_xray/chest_xray', rel))
    apple = os.path.join(HERE, '__MACOSX/chest_xray', folder, '._' + names[0])
    os.makedirs(os.path.dirname(apple), exist_ok=True)
    with open(apple, 'wb') as f:
      f.write(b'\x00\x05\x16\x07AppleDouble junk')
  for path in ('chest_xray/.DS_Store', 'chest_xray/train/NORMAL/.DS_Store',
               'chest_xray/train/NORMAL/._IM-0115-0001.jpeg'):
    with open(os.path.join(HERE, path), 'wb') as f:
      f.write(b'\x00\x00\x00\x01Bud1 not an image')
  with open(os.path.join(HERE, 'chest_xray/train/notes.txt'), 'w') as f:
    f.write('not an image\n')


if __name__ == '__main__':
  main()
