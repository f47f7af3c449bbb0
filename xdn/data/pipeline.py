"""Input pipeline: a TFDS split -> numpy batches `[devices, batch, S, S, 1]`.

Pixel values are float32 in [0, 1]; S is `data.image_size`.

Training batches are a pure function of (seed, step) and the data: step s
takes positions `s * B ... (s + 1) * B - 1` of an endless sequence of epochs,
epoch e being a permutation of the split drawn from
`np.random.default_rng([seed, 0, e])`; augmentation parameters for the whole
global batch come from `np.random.default_rng([seed, 1, s])`. So resuming at
`start_step=s` gives bit-identical batches to an uninterrupted run, and
process p of P takes slice p of every global batch.

Splits of fixed-size configs (`chest_xray_sample`, `chest_xray/64|128|256`;
at most ~0.35 GB) are loaded once per process into a uint8 array and gathered
by index. `chest_xray/full` (variable sizes) is read with random access from
an ArrayRecord data set (`tfds.data_source`), decoding and cropping each image
in a thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
import concurrent.futures
import functools
import itertools
import os
import tempfile
from typing import Any

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from xdn.data import folder
from xdn.data import prefetch
from xdn import errors
from xdn.io import images as image_io

DataConfig = Any  # An ml_collections.ConfigDict: `config.data`.

_KAGGLE_URL = 'https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia'
_DECODE_THREADS = 16
_RANDOM_ACCESS_CHUNK = 256  # Images read from disk at once.
_PERMUTATION_STREAM = 0
_AUGMENT_STREAM = 1


def prepare(data_config: DataConfig) -> None:
  """Builds the TFDS data set if needed and logs what will be used."""
  if _is_folder(data_config):
    files = folder.split_files(folder.list_files(data_config.manual_dir),
                               data_config.split_fractions)
    logging.info('DATA folder %s: %s images by split (%s)',
                 data_config.manual_dir,
                 {k: len(v) for k, v in files.items()},
                 data_config.split_fractions)
    for role in ('train_split', 'eval_split'):
      if data_config[role] not in files or not files[data_config[role]]:
        raise errors.UserError(
            f'split {data_config[role]!r} (data.{role}) of folder '
            f'{data_config.manual_dir!r} is empty or unknown; use one of '
            f'{folder.SPLITS} with data.split_fractions giving it images')
    return
  builder = _prepared_builder(data_config.name, data_config.data_dir,
                              data_config.manual_dir,
                              data_config.get('skip_corrupt', False))
  splits = {name: split.num_examples
            for name, split in builder.info.splits.items()}
  banner = '=' * 78
  logging.info(banner)
  logging.info('DATA SET %s from %s', builder.info.full_name,
               builder.data_dir)
  for role in ('train_split', 'eval_split', 'test_split'):
    split = data_config[role]
    logging.info('  data.%-12s %-14r %s images', role, split, splits.get(split))
  logging.info('  all splits: %s', splits)
  logging.info('  image_size=%d random_crop=%s flip=%s rot90=%s '
               'num_eval_images=%d', data_config.image_size,
               data_config.random_crop, data_config.flip, data_config.rot90,
               data_config.num_eval_images)
  logging.info(banner)
  for role in ('train_split', 'eval_split', 'test_split'):
    _check_split(builder, data_config[role])


def split_size(data_config: DataConfig, split: str) -> int:
  """Number of images in `split`."""
  if _is_folder(data_config):
    return len(_split_images(data_config, split))
  builder = _prepared_builder(data_config.name, data_config.data_dir,
                              data_config.manual_dir)
  _check_split(builder, split)
  return builder.info.splits[split].num_examples


def eval_images(data_config: DataConfig, split: str) -> np.ndarray:
  """All images of `split` (at most `data.num_eval_images` if > 0), in order.

  Returns:
    float32 `[N, S, S, 1]` in [0, 1], centre-cropped to S when larger.
  """
  images = _split_images(data_config, split)
  if _is_folder(data_config):
    crops = images.eval_crops(data_config.image_size)
    return crops[:data_config.num_eval_images or None]
  count = len(images)
  if data_config.num_eval_images > 0:
    count = min(count, data_config.num_eval_images)
  crops = images.crops(np.arange(count), data_config.image_size, offsets=None)
  return image_io.to_float01(crops)


def train_batches(
    data_config: DataConfig,
    *,
    global_batch_size: int,
    num_devices: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[np.ndarray]:
  """Endless training batches from `data.train_split`, starting at start_step.

  Args:
    data_config: `config.data`.
    global_batch_size: images per step over all processes and devices.
    num_devices: local devices of this process (the leading output axis).
    seed: data seed; with the step it fixes each batch.
    start_step: step of the first batch (for resuming).
    process_index: this process, in [0, process_count).
    process_count: number of processes (hosts).

  Yields:
    float32 `[num_devices, global_batch_size // process_count // num_devices,
    S, S, 1]` in [0, 1]. `data.prefetch` batches are prepared ahead on a
    background thread, which stops when the iterator is closed or collected.
  """
  shards = num_devices * process_count
  if global_batch_size <= 0 or global_batch_size % shards:
    raise errors.UserError(
        f'batch_size={global_batch_size} must be a positive multiple of '
        f'num_devices * process_count = {num_devices} * {process_count}; '
        f'set --config.batch_size to a multiple of {shards}.')
  if not 0 <= process_index < process_count:
    raise errors.UserError(
        f'process_index={process_index} not in [0, {process_count}).')
  images = _split_images(data_config, data_config.train_split)
  if not len(images):
    raise errors.UserError(f'{images.what} has no images; choose another '
                           '--config.data.train_split.')
  size = data_config.image_size
  images.check_size(size)
  local = global_batch_size // process_count
  mine = slice(process_index * local, (process_index + 1) * local)
  permutation = functools.lru_cache(maxsize=4)(
      lambda epoch: _rng(seed, _PERMUTATION_STREAM, epoch).permutation(
          len(images)))

  def make_batch(step: int) -> np.ndarray:
    positions = np.arange(step * global_batch_size,
                          (step + 1) * global_batch_size)[mine]
    epochs, within = np.divmod(positions, len(images))
    indices = np.empty_like(positions)
    for epoch in np.unique(epochs):
      at = epochs == epoch
      indices[at] = permutation(int(epoch))[within[at]]
    rng = _rng(seed, _AUGMENT_STREAM, step)
    # Drawn for the whole global batch whatever the flags, so each example's
    # augmentation depends only on (seed, step, position in the batch).
    offsets = rng.random((global_batch_size, 2))[mine]
    flips = rng.integers(0, 2, (global_batch_size, 2), dtype=bool)[mine]
    turns = rng.integers(0, 4, global_batch_size)[mine]
    offsets = offsets if data_config.random_crop else None
    if isinstance(images, folder.FolderImages):
      # Drawn after the others, so other sources' batches stay as they were.
      native, scale = rng.random((2, global_batch_size))[:, mine]
      scale[native < data_config.native_fraction] = 0.0
      batch = images.crops(indices, size, offsets, scale,
                           max_downscale=data_config.max_downscale)
    else:
      batch = images.crops(indices, size, offsets)
    if data_config.flip:
      batch[flips[:, 0]] = batch[flips[:, 0], :, ::-1]
      batch[flips[:, 1]] = batch[flips[:, 1], ::-1, :]
    if data_config.rot90:
      for k in (1, 2, 3):
        batch[turns == k] = np.rot90(batch[turns == k], k, axes=(1, 2))
    if batch.dtype != np.float32:
      batch = image_io.to_float01(batch)
    return batch.reshape(num_devices, local // num_devices, size, size, 1)

  return prefetch.prefetch(make_batch, itertools.count(start_step),
                           data_config.prefetch)


# ------------------------------------------------------------ split images


class _InMemoryImages:
  """A split held as one uint8 array `[N, H, W, 1]`."""

  def __init__(self, array: np.ndarray, what: str):
    self.array = array
    self.what = what
    self.array.setflags(write=False)  # Shared by every caller in the process.

  def __len__(self) -> int:
    return len(self.array)

  def check_size(self, size: int) -> None:
    _check_shape(self.array.shape[1:3], size, self.what)

  def crops(self, indices: np.ndarray, size: int,
            offsets: np.ndarray | None) -> np.ndarray:
    """`[n, size, size, 1]` uint8 crops, centred where `offsets` is None."""
    self.check_size(size)
    h, w = self.array.shape[1:3]
    if (h, w) == (size, size):
      return self.array[indices]
    tops, lefts = _crop_corners(h, w, size, len(indices), offsets)
    return np.stack([self.array[i, t:t + size, l:l + size]
                     for i, t, l in zip(indices, tops, lefts)])


class _RandomAccessImages:
  """A split read from an ArrayRecord data source; images decoded on demand."""

  def __init__(self, source: Any, what: str):
    self.source = source
    self.what = what

  def __len__(self) -> int:
    return len(self.source)

  def check_size(self, size: int) -> None:
    del size  # Checked per image in `crops`.

  def crops(self, indices: np.ndarray, size: int,
            offsets: np.ndarray | None) -> np.ndarray:
    """`[n, size, size, 1]` uint8 crops, centred where `offsets` is None."""
    if not len(indices):
      return np.zeros((0, size, size, 1), np.uint8)
    if offsets is None:
      offsets = [None] * len(indices)
    # In chunks, so that a long eval split is never all in memory at once.
    return np.concatenate([
        self._crops(indices[i:i + _RANDOM_ACCESS_CHUNK], size,
                    offsets[i:i + _RANDOM_ACCESS_CHUNK])
        for i in range(0, len(indices), _RANDOM_ACCESS_CHUNK)])

  def _crops(self, indices, size, offsets) -> np.ndarray:
    examples = self.source.__getitems__([int(i) for i in indices])

    def crop(example, offset):
      name = f"{self.what} image {example['filename'].decode()!r}"
      image = image_io.decode_grayscale(example['image'], name)
      _check_shape(image.shape, size, name)
      (top,), (left,) = _crop_corners(
          *image.shape, size, 1, None if offset is None else offset[None])
      return image[top:top + size, left:left + size, None]

    return np.stack(list(_decode_pool().map(crop, examples, offsets)))


def _is_folder(data_config: DataConfig) -> bool:
  return data_config.name == 'folder'


def _split_images(data_config: DataConfig, split: str):
  if _is_folder(data_config):
    return folder.load(data_config.manual_dir, split,
                       data_config.split_fractions,
                       data_config.get('skip_corrupt', False))
  return _load_split(data_config.name, data_config.data_dir,
                     data_config.manual_dir, split)


@functools.lru_cache(maxsize=None)
def _load_split(name: str, data_dir: str, manual_dir: str, split: str):
  """The images of a split, loaded once per process."""
  builder = _prepared_builder(name, data_dir, manual_dir)
  _check_split(builder, split)
  what = f'{name}:{split}'
  if not _fixed_shape(builder):
    try:
      source = builder.as_data_source(
          split, decoders={'image': tfds.decode.SkipDecoding()})
    except NotImplementedError as e:  # Prepared as TFRecord, outside xdn.
      raise errors.UserError(
          f'{name} in {builder.data_dir} was prepared without random access; '
          'xdn prepares it as ArrayRecord: delete that folder (or choose '
          'another --config.data.data_dir) and run again.') from e
    return _RandomAccessImages(source, what)
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  dataset = dataset.map(lambda example: example['image'],
                        num_parallel_calls=tf.data.AUTOTUNE)
  chunks = list(dataset.batch(1024).as_numpy_iterator())
  array = np.concatenate(chunks) if chunks else np.zeros(
      (0, *builder.info.features['image'].shape), np.uint8)
  logging.info('Loaded %s: %s uint8, %.1f MB.', what, array.shape,
               array.nbytes / 2**20)
  return _InMemoryImages(array, what)


# ----------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def _prepared_builder(name: str, data_dir: str, manual_dir: str,
                      skip_corrupt: bool = False) -> tfds.core.DatasetBuilder:
  """The TFDS builder for `name`, building the data set first if needed.

  `skip_corrupt` (Kaggle builder only) skips unreadable images with a warning
  while building, instead of stopping.
  """
  kwargs = {'skip_corrupt': True} if skip_corrupt else {}
  try:
    builder = tfds.builder(name, data_dir=data_dir or None, **kwargs)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise errors.UserError(
        f"data.name={name!r} is not a known TFDS data set; use "
        "'chest_xray_sample' or 'chest_xray/64', '/128', '/256', '/full'."
    ) from e
  if builder.is_prepared():
    return builder
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS and not manual_dir:
    raise errors.UserError(
        f'data set {name!r} is not prepared in {builder.data_dir} and needs '
        'the Kaggle download: get archive.zip from '
        f'{_KAGGLE_URL} and pass --config.data.manual_dir=/path/to/archive.zip')
  # Variable-size images need random access (ArrayRecord), others TFRecord.
  file_format = None if _fixed_shape(builder) else 'array_record'
  logging.info('Preparing %s in %s (one-off).', name, builder.data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=_as_folder(manual_dir) if manual_dir else None),
      file_format=file_format)
  return builder


def _as_folder(manual_dir: str) -> str:
  """TFDS's manual_dir is a folder: a zip file given is linked into one."""
  if not os.path.isfile(manual_dir):
    return manual_dir
  folder = tempfile.mkdtemp(prefix='xdn_manual_')
  os.symlink(os.path.abspath(manual_dir),
             os.path.join(folder, os.path.basename(manual_dir)))
  return folder


def _fixed_shape(builder: tfds.core.DatasetBuilder) -> bool:
  return None not in builder.info.features['image'].shape


def _check_split(builder: tfds.core.DatasetBuilder, split: str) -> None:
  if split not in builder.info.splits:
    raise errors.UserError(
        f'split {split!r} is not in {builder.info.full_name}; available '
        f'splits: {sorted(builder.info.splits)}.')


def _check_shape(shape: tuple[int, ...], size: int, what: str) -> None:
  if shape[0] < size or shape[1] < size:
    raise errors.UserError(
        f'{what} is {shape[0]}x{shape[1]}, smaller than data.image_size='
        f'{size}; lower --config.data.image_size or use a larger data set '
        "config (e.g. data.name='chest_xray/256').")


def _crop_corners(h: int, w: int, size: int, count: int,
                  offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
  """Top-left corners of size x size crops; offsets in [0, 1) pick them."""
  if offsets is None:
    return (np.full(count, (h - size) // 2), np.full(count, (w - size) // 2))
  tops = np.floor(offsets[:, 0] * (h - size + 1)).astype(int)
  lefts = np.floor(offsets[:, 1] * (w - size + 1)).astype(int)
  return tops, lefts


def _rng(seed: int, stream: int, counter: int) -> np.random.Generator:
  # SeedSequence needs non-negative entropy: wrap negative seeds to 64 bits.
  return np.random.default_rng([seed % 2**64, stream, counter])


@functools.lru_cache(maxsize=None)
def _decode_pool() -> concurrent.futures.ThreadPoolExecutor:
  return concurrent.futures.ThreadPoolExecutor(
      _DECODE_THREADS, thread_name_prefix='xdn-decode')
