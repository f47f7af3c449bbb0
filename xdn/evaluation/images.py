"""The clean test images an evaluation corrupts: a split of a folder of
radiographs, or a split of the data set a config's `data` section names."""

import dataclasses
import os
from typing import List, Optional, Sequence, Union

from absl import logging
import ml_collections
import numpy as np

from xdn import errors
from xdn.io import radiographs as radiograph_io

# [N, S, S, 1] of one size (a data set), or [H, W, 1] each (a folder).
Images = Union[np.ndarray, Sequence[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TestImages:
  """Clean images in [0, 1] and where they came from."""
  clean: Images
  data: str  # The folder, or the data set's name.
  split: str


def folder_images(path: str, split: str, limit: int = 0,
                  split_fractions: str = '0.8,0.1,0.1') -> List[np.ndarray]:
  """Clean [H, W, 1] images of a folder's split ('all': every file), split
  by patient as in training; at most `limit` (0: all)."""
  from xdn.data import folder  # pylint: disable=g-import-not-at-top
  files = folder.list_files(path)
  if split != 'all':
    if split not in folder.SPLITS:
      raise errors.UserError(f'split {split!r} of folder {path!r}: use one '
                             f'of {folder.SPLITS} or all')
    files = folder.split_files(files, split_fractions)[split]
  files = files[:limit or None]
  if not files:
    raise errors.UserError(f'no images in split {split!r} of {path!r}')
  images = []
  for relative in files:
    try:
      images.append(radiograph_io.read_radiograph(
          os.path.join(path, relative)).pixels[..., None])
    except Exception as e:  # pylint: disable=broad-except  # Any: skip it.
      logging.warning('Skipping %s: %s', relative, str(e).splitlines()[0])
  logging.info('%d of %d images of %s:%s read (%d skipped)', len(images),
               len(files), path, split, len(files) - len(images))
  if not images:
    raise errors.UserError(f'no readable images in split {split!r} of '
                           f'{path!r}')
  return images


def folder_pixel_mm(path: str, most: int = 20) -> Optional[float]:
  """The median pixel spacing (mm) the DICOM files of a folder state (the
  first `most` of them); None where none states one."""
  from xdn.data import folder  # pylint: disable=g-import-not-at-top
  spacings = []
  for relative in folder.list_files(path):
    if len(spacings) >= most:
      break
    spacing = radiograph_io.pixel_spacing_mm(os.path.join(path, relative))
    if spacing:
      spacings.append(spacing)
  return float(np.median(spacings)) if spacings else None


def from_folder(path: str, split: Optional[str] = None, limit: int = 0,
                split_fractions: str = '0.8,0.1,0.1') -> TestImages:
  """A folder's split (default 'test'); see `folder_images`."""
  split = split or 'test'
  return TestImages(folder_images(path, split, limit, split_fractions), path,
                    split)


def saved_data_config(workdir: str) -> ml_collections.ConfigDict:
  """The `data` section of a training workdir's saved config."""
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  return checkpoints.read_config(workdir).data


def from_config(data_config: ml_collections.ConfigDict,
                split: Optional[str] = None, data_dir: Optional[str] = None,
                limit: int = 0) -> TestImages:
  """A split (default: the config's `test_split`) of the data a config's
  `data` section names, built first if needed; at most `limit` (0: all).
  `data_dir` overrides where the TFDS data are found."""
  from xdn.data import pipeline  # pylint: disable=g-import-not-at-top  # TF.
  data_config = data_config.copy_and_resolve_references()
  if data_dir is not None:
    data_config.data_dir = data_dir
  data_config.num_eval_images = max(limit, 0)
  split = split or data_config.test_split
  pipeline.prepare(data_config)
  return TestImages(pipeline.eval_images(data_config, split),
                    data_config.name, split)
