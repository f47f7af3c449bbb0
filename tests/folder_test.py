"""The folder data source: patient splits, 8/16-bit and DICOM files of any
size, random patches with scale augmentation, batches a function of
(seed, step)."""

import os

import numpy as np
import pytest

from xdn.configs import default
from tests import dicom_fixtures
from xdn.data import folder
from xdn.data import pipeline
from xdn import errors
from xdn.io import images as image_io


def _smooth_image(rng, h, w):
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = 0.5 + 0.3 * np.sin(6 * x + rng.random() * 3) * np.cos(4 * y)
  return np.clip(base + 0.05 * rng.random((h, w)), 0, 1)


@pytest.fixture(scope='module')
def radiographs(tmp_path_factory):
  """NIH-named PNGs (8 and 16 bit, two per patient), a TIFF and a DICOM."""
  root = tmp_path_factory.mktemp('radiographs')
  rng = np.random.default_rng(0)
  (root / 'sub').mkdir()
  for patient in range(12):
    for study in range(2):
      image = _smooth_image(rng, 150 + 10 * patient, 200)
      if patient % 2:
        data = np.round(image * 65535).astype(np.uint16)
      else:
        data = np.round(image * 255).astype(np.uint8)
      (root / f'{patient:08d}_{study:03d}.png').write_bytes(
          image_io.encode_png(data))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.round(_smooth_image(rng, 130, 140) * 255).astype(
      np.uint8)).save(root / 'sub' / 'scan.tif')
  _write_dicom(root / 'sub' / 'study.dcm', _smooth_image(rng, 140, 160))
  (root / 'notes.txt').write_text('not an image')
  return str(root)


def _write_dicom(path, image):
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  ds = dicom_fixtures.dataset(np.round(image * 4095).astype(np.uint16),
                              bits=12)
  path.write_bytes(dicom_fixtures.encode(ds, uid.ExplicitVRLittleEndian))


def test_files_and_patients(radiographs):
  files = folder.list_files(radiographs)
  assert len(files) == 26 and 'notes.txt' not in files
  assert folder.patient_id('00000003_001.png') == '00000003'
  assert folder.patient_id(os.path.join('sub', 'scan.tif')) == 'sub/scan'


def test_splits_are_by_patient_deterministic_and_complete(radiographs):
  files = folder.list_files(radiographs)
  splits = folder.split_files(files, '0.6,0.2,0.2')
  assert sorted(sum(splits.values(), [])) == sorted(files)
  patients = {s: {folder.patient_id(f) for f in v} for s, v in splits.items()}
  assert not patients['train'] & patients['validation']
  assert not patients['train'] & patients['test']
  assert all(splits.values())
  # The same whatever order the files come in.
  reordered = folder.split_files(files[::-1], '0.6,0.2,0.2')
  assert {s: set(v) for s, v in reordered.items()} == {
      s: set(v) for s, v in splits.items()}


@pytest.mark.parametrize('fractions', ['0.5,0.5', '0.8,0.3,0.1', 'a,b,c'])
def test_bad_fractions_are_one_line_errors(fractions):
  with pytest.raises(errors.UserError, match='split_fractions'):
    folder.parse_fractions(fractions)


def test_missing_folder_is_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match='not a folder'):
    folder.list_files(str(tmp_path / 'nope'))
  with pytest.raises(errors.UserError, match='no PNG'):
    folder.list_files(str(tmp_path))


def test_images_keep_their_bit_depth(radiographs):
  images = folder.FolderImages(radiographs, 'train', '0.6,0.2,0.2')
  for relative, image in zip(images.files, images.images):
    assert image.dtype == np.uint16
    if relative.endswith('.png'):
      raw = image_io.read_grayscale(os.path.join(radiographs, relative))
      np.testing.assert_allclose(image / 65535.0, image_io.to_float01(raw),
                                 atol=1e-6)


def test_crops_native_and_downscaled(radiographs):
  images = folder.FolderImages(radiographs, 'train', '0.6,0.2,0.2')
  n = len(images)
  native = images.crops(np.arange(n), 32, None)
  assert native.shape == (n, 32, 32, 1) and native.dtype == np.float32
  # Scale 1 with max_downscale = inf: the whole centre square, shrunk.
  shrunk = images.crops(np.arange(n), 32, None, np.ones(n),
                        max_downscale=np.inf)
  first = images.images[0].astype(np.float64) / 65535
  side = min(first.shape)
  top, left = (first.shape[0] - side) // 2, (first.shape[1] - side) // 2
  square = first[top:top + side, left:left + side]
  # An area average: the mean of the square is kept.
  assert shrunk[0].mean() == pytest.approx(square.mean(), abs=2e-3)
  assert 0 <= shrunk.min() and shrunk.max() <= 1


def test_training_batches_are_a_function_of_seed_and_step(radiographs):
  config = default.get_config().data
  config.name = 'folder'
  config.manual_dir = radiographs
  config.split_fractions = '0.6,0.2,0.2'
  config.image_size = 32
  config.random_crop = config.flip = config.rot90 = True
  config.max_downscale = 4.0
  first = pipeline.train_batches(config, global_batch_size=6, num_devices=2,
                                 seed=3)
  batches = [next(first) for _ in range(3)]
  first.close()
  assert batches[0].shape == (2, 3, 32, 32, 1)
  resumed = pipeline.train_batches(config, global_batch_size=6, num_devices=2,
                                   seed=3, start_step=2)
  np.testing.assert_array_equal(next(resumed), batches[2])
  resumed.close()
  other = pipeline.train_batches(config, global_batch_size=6, num_devices=2,
                                 seed=4)
  assert not np.array_equal(next(other), batches[0])
  other.close()
  evals = pipeline.eval_images(config, 'validation')
  assert evals.shape[1:] == (32, 32, 1) and len(evals) % 2 == 0
