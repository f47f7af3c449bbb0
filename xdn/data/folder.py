"""A folder of radiographs as a data source (`data.name='folder'`).

Any folder of PNG, JPEG, TIFF (8 or 16 bit), BMP or DICOM files, of any size
and in subfolders, read through `xdn.io.radiographs` (so DICOM rescale,
MONOCHROME1 and bit depths are handled as `xdn-denoise` handles them).

Splits are by patient, deterministic and independent of file order: a file
named like the NIH set, `<patient>_<study>.<ext>` (e.g. `00000013_005.png`),
belongs to patient `<patient>`; any other file is its own patient (its path
without extension). Patients are ordered by the md5 of their id and cut into
`data.split_fractions` (train, validation, test; see
`xdn.data.patient_split.assign_patients`). Adding files can move others
between splits; keep the folder fixed for comparable runs.

Images are held in memory as uint16 (any 8- or 16-bit image exactly; 2 bytes
a pixel: 240 radiographs of 1024x1024 take 0.5 GB). Training takes random
`image_size` patches, each either at native resolution or from the image
downscaled by a random factor (area averaging), so one model sees what a
detector delivers and what a thumbnail looks like.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import re

from absl import logging
import numpy as np
from PIL import Image

from xdn.data import patient_split
from xdn import errors
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io

SPLITS = ('train', 'validation', 'test')
_NIH_NAME = re.compile(r'^(\d+)_\d+$')
_SCALE = 65535.0


def list_files(folder: str) -> list[str]:
  """Radiograph files under `folder` (recursive), as sorted relative paths."""
  if not folder:
    raise errors.UserError("data.name='folder' needs the folder: pass "
                           '--config.data.manual_dir=/path/to/radiographs')
  if not os.path.isdir(folder):
    raise errors.UserError(
        f'data.manual_dir={folder!r} is not a folder; pass the folder that '
        'holds your radiographs')
  files = []
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    for name in sorted(names):
      path = os.path.join(root, name)
      if radiograph_io.is_radiograph_file(path):
        files.append(os.path.relpath(path, folder))
  if not files:
    raise errors.UserError(
        f'no PNG, JPEG, TIFF, BMP or DICOM files in {folder!r}; pass a folder '
        'of radiographs as --config.data.manual_dir')
  return files


def patient_id(relative_path: str) -> str:
  """The patient of a file: NIH `<patient>_<study>` names, else the file."""
  stem = os.path.splitext(relative_path)[0]
  match = _NIH_NAME.match(os.path.basename(stem))
  return match.group(1) if match else stem.replace(os.sep, '/')


def parse_fractions(text: str) -> dict[str, float]:
  """'0.8,0.1,0.1' -> {'train': 0.8, 'validation': 0.1, 'test': 0.1}."""
  try:
    values = [float(v) for v in str(text).split(',')]
  except ValueError:
    values = []
  if (len(values) != 3 or min(values) < 0 or
      abs(sum(values) - 1.0) > 1e-6):
    raise errors.UserError(
        f'data.split_fractions={text!r} must be three fractions (train, '
        "validation, test) that sum to 1, e.g. '0.8,0.1,0.1'")
  return dict(zip(SPLITS, values))


def split_files(files: list[str], fractions: str) -> dict[str, list[str]]:
  """{split: files}, by patient as the module docstring says."""
  fractions = parse_fractions(fractions)
  used = {k: v for k, v in fractions.items() if v > 0}
  assignment = patient_split.assign_patients(
      [patient_id(f) for f in files], used)
  out = {split: [] for split in SPLITS}
  for f in files:
    out[assignment[patient_id(f)]].append(f)
  return out


def _read(folder: str, relative: str) -> np.ndarray:
  pixels = radiograph_io.read_radiograph(os.path.join(folder, relative)).pixels
  return np.round(np.clip(pixels, 0.0, 1.0) * _SCALE).astype(np.uint16)


class FolderImages:
  """One split of a folder, in memory; crops as the input pipeline wants."""

  def __init__(self, folder: str, split: str, fractions: str,
               skip_corrupt: bool = False):
    if split not in SPLITS:
      raise errors.UserError(f'split {split!r} is not a split of a folder; '
                             f'use one of {SPLITS}')
    self.what = f'folder {folder}:{split}'
    self.files = split_files(list_files(folder), fractions)[split]
    self.skipped: list[str] = []
    images = []
    radiograph_io.quiet_pydicom_logs()  # One line per unreadable file.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      futures = [pool.submit(_read, folder, f) for f in self.files]
      for relative, future in zip(self.files, futures):
        try:
          images.append(future.result())
        except MemoryError:
          raise  # Not the file's fault.
        except Exception as e:  # pylint: disable=broad-except  # Per file.
          expected = isinstance(e, (ValueError, OSError))
          message = image_io.clean_message(e) or type(e).__name__
          if relative not in message:
            message = f'{relative}: {message}'
          if not expected:  # A bug or an unforeseen case: keep its stack.
            message = f'{message} (unexpected {type(e).__name__})'
            logging.warning('Traceback of %s:', relative, exc_info=e)
          if not skip_corrupt:
            raise errors.UserError(
                f'{message} (set --config.data.skip_corrupt=True to skip '
                'unreadable files)') from e
          logging.warning('Skipping %s', message)
          self.skipped.append(relative)
    self.files = [f for f in self.files if f not in set(self.skipped)]
    self.images = images
    logging.info('Loaded %s: %d images (%d skipped), %.1f MB.', self.what,
                 len(images), len(self.skipped),
                 sum(i.nbytes for i in images) / 2**20)

  def __len__(self) -> int:
    return len(self.images)

  def check_size(self, size: int) -> None:
    for relative, image in zip(self.files, self.images):
      if min(image.shape) < size:
        raise errors.UserError(
            f'{self.what} image {relative!r} is {image.shape[0]}x'
            f'{image.shape[1]}, smaller than data.image_size={size}; lower '
            '--config.data.image_size or leave the file out')

  def crops(self, indices: np.ndarray, size: int, offsets: np.ndarray | None,
            scales: np.ndarray | None = None, *,
            max_downscale: float = 1.0) -> np.ndarray:
    """float32 `[n, size, size, 1]` crops in [0, 1].

    `offsets` [n, 2] in [0, 1) place each crop (None: centred). `scales`
    [n] in [0, 1] pick a downscaling factor log-uniformly in
    [1, min(max_downscale, shortest side / size)] (None: native).
    """
    out = np.empty((len(indices), size, size, 1), np.float32)
    for n, i in enumerate(indices):
      image = self.images[int(i)]
      h, w = image.shape
      limit = max(min(max_downscale, min(h, w) / size), 1.0)
      factor = 1.0 if scales is None else float(limit**scales[n])
      side = min(int(round(size * factor)), h, w)
      top, left = ((h - side) // 2, (w - side) // 2) if offsets is None else (
          int(offsets[n, 0] * (h - side + 1)),
          int(offsets[n, 1] * (w - side + 1)))
      region = image[top:top + side, left:left + side].astype(np.float32)
      out[n, ..., 0] = _area_resize(region, size) / _SCALE
    return out

  def eval_crops(self, size: int) -> np.ndarray:
    """Per image: a native-resolution centre crop and the whole image shrunk.

    float32 `[2 * N, size, size, 1]`: the first N are centre crops at
    native resolution, the next N each image's centre square downscaled to
    `size` (a thumbnail), so validation covers both regimes.
    """
    indices = np.arange(len(self))
    native = self.crops(indices, size, None)
    thumbs = self.crops(indices, size, None, np.ones(len(self)),
                        max_downscale=np.inf)
    return np.concatenate([native, thumbs])


def _area_resize(region: np.ndarray, size: int) -> np.ndarray:
  """A square float32 region -> size x size by area averaging (box filter)."""
  if region.shape == (size, size):
    return region
  return np.asarray(Image.fromarray(region, mode='F').resize(
      (size, size), Image.Resampling.BOX))


@functools.lru_cache(maxsize=None)
def load(folder: str, split: str, fractions: str,
         skip_corrupt: bool = False) -> FolderImages:
  """A split of a folder, loaded once per process."""
  return FolderImages(folder, split, fractions, skip_corrupt)
