"""chest_xray: Kermany et al. (2018) pediatric chest X-rays, from Kaggle.

Configs: '64', '128', '256' (shorter side resized with antialiasing, centre
square crop) and 'full' (original size, lossless PNG of the decoded 8-bit
grayscale). Splits:

* 'train', 'val', 'test': the official Kaggle splits (5,216 / 16 / 624).
* 'validation' and 'train_main': the official 'train' split cut by patient:
  about 10% of its patients (the first ones when ordered by the md5 hash of
  the patient id) go to 'validation', the others to 'train_main'. No patient
  is in both; together they are exactly 'train'. The official 'val' split is
  too small (16 images) to select checkpoints with.

A corrupt image stops the build with its name; build with
`tfds.builder('chest_xray/64', skip_corrupt=True)` (or
`tfds.load(..., builder_kwargs={'skip_corrupt': True})`) to skip such images
with a warning instead.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from xdn.data.chest_xray import kaggle_files
from xdn.data import patient_split
from xdn.io import images as image_io

_HOMEPAGE = 'https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia'
_MENDELEY = 'https://data.mendeley.com/datasets/rscbjbr9sj/2'
_VALIDATION_FRACTION = 0.1
# Images decoded at once by the thread pool; bounds memory for 'full'.
_DECODE_CHUNK = 64

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the Kaggle data set "Chest X-Ray Images (Pneumonia)" (about 1.2 GB,
licence CC BY 4.0) from {_HOMEPAGE}
(button "Download", or `kaggle datasets download -d
paultimothymooney/chest-xray-pneumonia`). Then point manual_dir (a folder,
as TFDS wants it) at any of:
  * a folder holding the zip (archive.zip or chest-xray-pneumonia.zip; every
    *.zip directly in it is read in place, not extracted),
  * the extracted `chest_xray/` folder, or the folder containing it.
For example: tfds.load('chest_xray/256', download_and_prepare_kwargs=dict(
download_config=tfds.download.DownloadConfig(manual_dir='~/Downloads')))
or, with xdn, --config.data.manual_dir=~/Downloads/archive.zip (xdn accepts
the zip itself too).
The same images are also on Mendeley Data: {_MENDELEY} (ZhangLabData).
"""


@dataclasses.dataclass(eq=False)
class ChestXrayConfig(tfds.core.BuilderConfig):
  """A resolution of chest_xray; `image_size=None` keeps the original size."""

  image_size: int | None = None


def _config(size: int | None) -> ChestXrayConfig:
  if size is None:
    return ChestXrayConfig(
        name='full', image_size=None,
        description='Original resolution, lossless 8-bit grayscale PNG.')
  return ChestXrayConfig(
      name=str(size), image_size=size,
      description=(f'{size}x{size}: shorter side resized to {size} '
                   '(antialiased), centre square crop.'))


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the Kaggle chest-xray-pneumonia data set."""

  name = 'chest_xray'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [_config(64), _config(128), _config(256), _config(None)]
  DEFAULT_BUILDER_CONFIG_NAME = '256'
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  # TFDS 4.9.10's own `code_path` imports the `importlib_resources` backport,
  # which it does not install on Python >= 3.9 (tensorflow/datasets#11212).
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def __init__(self, *, skip_corrupt: bool = False, **kwargs):
    """Creates the builder.

    Args:
      skip_corrupt: skip images that cannot be decoded, with a warning,
        instead of stopping the build.
      **kwargs: passed to `tfds.core.GeneratorBasedBuilder`.
    """
    self._skip_corrupt = skip_corrupt
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(
                shape=(size, size, 1), dtype=np.uint8, encoding_format='png'),
            'label': tfds.features.ClassLabel(names=kaggle_files.CLASSES),
            'pathology': tfds.features.ClassLabel(
                names=['normal', 'bacteria', 'virus']),
            'patient_id': tfds.features.Text(),
            'filename': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage=_HOMEPAGE,
        license='CC BY 4.0',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = _manual_path(dl_manager)
    images = kaggle_files.find_images(root)
    by_split = {s: [i for i in images if i.split == s]
                for s in kaggle_files.SPLITS}
    if not all(by_split.values()):
      counts = ', '.join(f'{s}: {len(v)}' for s, v in by_split.items())
      raise FileNotFoundError(
          f'chest_xray: found no complete Kaggle download in {root} (images '
          f'per split: {counts}; expected chest_xray/{{train,val,test}}/'
          f'{{NORMAL,PNEUMONIA}}/*.jpeg).\n{MANUAL_DOWNLOAD_INSTRUCTIONS}')
    logging.info('chest_xray: %s images in %s.', len(images), root)
    patient = {i: kaggle_files.parse_name(i.label, i.name)[1]
               for i in by_split['train']}
    carved = patient_split.assign_patients(
        patient.values(),
        {'validation': _VALIDATION_FRACTION,
         'train_main': 1.0 - _VALIDATION_FRACTION})
    for name in ('train_main', 'validation'):
      by_split[name] = [
          i for i in by_split['train'] if carved[patient[i]] == name]
    return {name: self._generate_examples(images)
            for name, images in by_split.items()}

  def _generate_examples(self, images: list[kaggle_files.ImageFile]):
    size = self.builder_config.image_size
    skipped = 0
    for image, png in _to_pngs(images, size):
      if isinstance(png, image_io.ImageDecodeError):
        self._on_corrupt(image, png)
        skipped += 1
        continue
      pathology, patient_id = kaggle_files.parse_name(image.label, image.name)
      yield image.relative_name, {
          'image': png,
          'label': image.label,
          'pathology': pathology,
          'patient_id': patient_id,
          'filename': image.relative_name,
      }
    if skipped:
      logging.warning('chest_xray: skipped %d of %d images as corrupt.',
                      skipped, len(images))

  def _on_corrupt(self, image: kaggle_files.ImageFile, error: Exception):
    if not self._skip_corrupt:
      raise image_io.ImageDecodeError(
          f'chest_xray: {error} Found in {_where(image)}. Re-download the '
          'data set, or build with skip_corrupt=True (e.g. tfds.builder('
          "'chest_xray/256', skip_corrupt=True)) to skip corrupt images."
      ) from error
    logging.warning('chest_xray: skipping corrupt image %s: %s',
                    _where(image), error)


def _manual_path(dl_manager: tfds.download.DownloadManager) -> epath.Path:
  """The manual_dir folder: the extracted download or a folder holding it.

  (TFDS's manual_dir is a folder; `find_images` also opens zips in it. xdn's
  pipeline stages a zip given as --config.data.manual_dir in a folder.)
  """
  try:
    return dl_manager.manual_dir
  except AssertionError as e:  # Missing or empty.
    raise FileNotFoundError(
        'chest_xray needs the Kaggle download in manual_dir, which is '
        f'missing or empty.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}') from e
  except NotADirectoryError as e:  # A file, e.g. the zip itself.
    raise FileNotFoundError(
        f'chest_xray: manual_dir must be a folder, got the file {e.filename}; '
        'pass the folder holding the zip (xdn\'s '
        '--config.data.manual_dir also takes the zip itself).') from e


def _to_png(data: bytes, name: str, size: int | None):
  """PNG bytes of the config's `[H, W, 1]` uint8 image, or the decode error.

  PNG encoding is done here with PIL (not by TFDS, through TensorFlow): it is
  faster and runs in parallel in the thread pool.
  """
  try:
    pixels = image_io.to_uint8(image_io.decode_grayscale(data, name))
  except image_io.ImageDecodeError as e:
    return e
  if size is not None:
    pixels = image_io.resize_square(pixels, size)
  return image_io.encode_png(pixels)


def _to_pngs(images: list[kaggle_files.ImageFile], size: int | None):
  """Yields (image, PNG bytes or error) in order, in a thread pool.

  Files are read in this thread; decoding, resizing and encoding (which
  release the GIL in PIL) run in the pool, a bounded chunk at a time.
  """
  files = kaggle_files.iter_bytes(images)
  with concurrent.futures.ThreadPoolExecutor() as pool:
    while chunk := list(itertools.islice(files, _DECODE_CHUNK)):
      decoded = pool.map(
          lambda item: _to_png(item[1], item[0].relative_name, size), chunk)
      yield from zip((image for image, _ in chunk), decoded)


def _where(image: kaggle_files.ImageFile) -> str:
  if image.archive:
    return f'{image.archive!r} member {image.path!r}'
  return repr(image.path)
