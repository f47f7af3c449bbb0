"""xdn-denoise and its library (xdn.inference.folder, tiling): formats round
trip, tiling, failures that are not fatal."""

import os
import re
import subprocess
import sys

import flax
import jax
import numpy as np
from PIL import Image
import pydicom
from pydicom import uid
import pytest
from scipy import ndimage

from xdn.configs import default
from tests import dicom_fixtures
from xdn import errors
from xdn.inference import folder as folder_lib
from xdn.inference import tiling
from xdn.inference import told
from xdn import models
from xdn.workdir import checkpoints
from xdn.workdir import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeDenoiser:
  """Stands in for xdn.inference.Denoiser; records what the model saw."""

  def __init__(self, fn=lambda x: x, fixed_size=None, name='fake',
               size_multiple=1):
    self.fn, self.name, self.step = fn, name, 0
    # What it takes, declared as a Denoiser's registry entry declares it
    # (size_multiple: a U-Net of depth d has 2**d).
    self.capabilities = models.Capabilities(fixed_size=fixed_size,
                                            size_multiple=size_multiple)
    self.inputs = []

  @property
  def fixed_size(self):
    return self.capabilities.fixed_size

  def __call__(self, images: np.ndarray) -> np.ndarray:
    assert images.ndim == 4 and images.shape[-1] == 1, images.shape
    assert images.dtype == np.float32
    if self.fixed_size:
      assert images.shape[1:3] == (self.fixed_size,) * 2, images.shape
    self.inputs.append(images.copy())
    return np.clip(self.fn(images), 0, 1).astype(np.float32)


def box_blur(images: np.ndarray) -> np.ndarray:
  """A local 'model': 3x3 mean, so tiles agree with the whole image inside."""
  return ndimage.uniform_filter(images, size=(1, 3, 3, 1), mode='nearest')


def tiny_unet_config(data_dir: str = ''):
  config = default.get_config()
  config.model = default.model_config('unet', base_width=4, depth=2)
  config.data.data_dir = data_dir
  return config


def make_workdir(workdir: str, config, seed: int = 0) -> str:
  """A training workdir holding an untrained model as its best checkpoint."""
  os.makedirs(workdir, exist_ok=True)
  checkpoints.write_config(workdir, config)
  model = models.create_model(config)
  size = models.fixed_input_size(config) or config.data.image_size
  state = state_lib.create_train_state(config, model, jax.random.key(seed),
                                       (size, size, 1))
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save_best(1, jax.device_get(flax.serialization.to_state_dict(state)),
                 psnr=1.0)
  ckpt.wait()
  ckpt.close()
  return workdir


def gradient(h: int, w: int, top: int, seed: int = 0) -> np.ndarray:
  """An integer image using its full range, with some texture."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  image = (xx + yy) / (h + w - 2) * 0.8 + rng.uniform(0, 0.2, (h, w))
  return np.round(image * top).astype(np.int64)


def write_dicom(path, pixels: np.ndarray, photometric: str, bits: int,
                slope: float = 1.0, intercept: float = 0.0) -> None:
  ds = dicom_fixtures.dataset(pixels, photometric, bits, slope, intercept)
  path.write_bytes(dicom_fixtures.encode(ds, uid.ExplicitVRLittleEndian))


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize('dtype,top', [(np.uint8, 255), (np.uint16, 65535),
                                       (np.uint16, 4095)])
def test_png_round_trip_keeps_shape_dtype_and_values(tmp_path, dtype, top):
  pixels = gradient(37, 53, top).astype(dtype)
  Image.fromarray(pixels).save(tmp_path / 'in.png')
  fake = FakeDenoiser()
  assert folder_lib.denoise_files(fake, [str(tmp_path / 'in.png')],
                                  str(tmp_path / 'out')) == 0
  out = np.asarray(Image.open(tmp_path / 'out' / 'in.png'))
  assert out.shape == pixels.shape and out.dtype == dtype
  np.testing.assert_array_equal(out, pixels)  # The identity model.
  # The model saw [0, 1] scaled by bit depth (a 12-bit image to 4095).
  seen = fake.inputs[0][0, ..., 0]
  np.testing.assert_allclose(seen, pixels / top, atol=1e-6)


def test_rgb_jpeg_becomes_a_grayscale_8bit_png(tmp_path):
  gray = gradient(40, 30, 255).astype(np.uint8)
  Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / 'x.jpg',
                                                 quality=95)
  assert folder_lib.denoise_files(FakeDenoiser(box_blur),
                                  [str(tmp_path / 'x.jpg')],
                                  str(tmp_path / 'out')) == 0
  assert not os.path.exists(tmp_path / 'out' / 'x.jpg')
  out = np.asarray(Image.open(tmp_path / 'out' / 'x.png'))
  assert out.shape == gray.shape and out.dtype == np.uint8


@pytest.mark.parametrize('photometric,bits,dtype,slope,intercept', [
    ('MONOCHROME2', 12, np.uint16, 1.0, 0.0),
    ('MONOCHROME1', 14, np.uint16, 0.5, -100.0),
    ('MONOCHROME2', 8, np.uint8, 1.0, 0.0),
    ('MONOCHROME2', 16, np.int16, 1.0, 1024.0),
])
def test_dicom_round_trip(tmp_path, photometric, bits, dtype, slope,
                          intercept):
  top = 2**bits - 1
  raw = gradient(33, 45, top)
  if np.issubdtype(dtype, np.signedinteger):
    raw -= 2**(bits - 1)
  raw = raw.astype(dtype)
  write_dicom(tmp_path / 'in.dcm', raw, photometric, bits, slope, intercept)
  fake = FakeDenoiser()
  assert folder_lib.denoise_files(fake, [str(tmp_path / 'in.dcm')],
                                  str(tmp_path / 'out')) == 0
  source = pydicom.dcmread(tmp_path / 'in.dcm')
  result = pydicom.dcmread(tmp_path / 'out' / 'in.dcm')
  assert result.pixel_array.shape == raw.shape
  assert result.pixel_array.dtype == raw.dtype
  np.testing.assert_array_equal(result.pixel_array, raw)
  # Metadata kept; a new instance in a derived series.
  assert result.PatientName == 'Test^Patient'
  assert result.PhotometricInterpretation == photometric
  assert result.BitsStored == bits
  assert (result.RescaleSlope, result.RescaleIntercept) == (slope, intercept)
  assert result.SOPInstanceUID != source.SOPInstanceUID
  assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID
  assert result.SeriesInstanceUID != source.SeriesInstanceUID
  assert result.ImageType[0] == 'DERIVED'
  # The model saw bright = dense: MONOCHROME1 inverted, range by Bits Stored.
  seen = fake.inputs[0][0, ..., 0]
  offset = 2**(bits - 1) if dtype == np.int16 else 0
  want = (raw.astype(np.float64) + offset) / top
  if photometric == 'MONOCHROME1':
    want = 1 - want
  np.testing.assert_allclose(seen, want, atol=1e-6)


def test_dicom_changes_reach_the_pixels_monochrome1(tmp_path):
  raw = gradient(20, 24, 4095).astype(np.uint16)
  write_dicom(tmp_path / 'a.dcm', raw, 'MONOCHROME1', 12)
  # A model that brightens (in MONOCHROME2 terms) must lower MONOCHROME1
  # stored values.
  brighten = FakeDenoiser(lambda x: x + 0.1)
  folder_lib.denoise_files(brighten, [str(tmp_path / 'a.dcm')],
                           str(tmp_path / 'out'))
  out = pydicom.dcmread(tmp_path / 'out' / 'a.dcm').pixel_array.astype(int)
  inside = (raw > 500)
  np.testing.assert_allclose((raw.astype(int) - out)[inside], 410, atol=1)


# -------------------------------------------------------------------- tiling


def test_tile_grid_covers_with_overlap():
  for length in (1, 16, 17, 64, 100, 129):
    starts, padded = tiling.tile_grid(length, 16, 4)
    assert padded >= max(length, 16) and starts[-1] + 16 == padded
    assert all(b - a == 12 for a, b in zip(starts, starts[1:]))
  starts, _ = tiling.tile_grid(1000, 512, 128, align=32)
  assert all(s % 32 == 0 for s in starts)


def _tile_border_mask(h, w, tile, overlap, align=1, margin=1):
  """Pixels within `margin` of an inner edge of some tile."""
  mask = np.zeros((h, w), bool)
  for axis, length in ((0, h), (1, w)):
    starts, _ = tiling.tile_grid(length, tile, overlap, align)
    for s in starts:
      for edge in (s, s + tile):
        if 0 < edge < length:
          index = [slice(None)] * 2
          index[axis] = slice(max(edge - margin, 0), edge + margin)
          mask[tuple(index)] = True
  return mask


@pytest.mark.parametrize('shape', [(50, 70), (16, 16), (9, 40)])
def test_tiled_and_untiled_agree_away_from_tile_borders(shape):
  image = np.random.default_rng(0).random(shape).astype(np.float32)
  whole = tiling.denoise_image(FakeDenoiser(box_blur), image)
  fixed = FakeDenoiser(box_blur, fixed_size=16)
  tiled = tiling.denoise_image(fixed, image, overlap=6, batch_size=5)
  assert tiled.shape == image.shape and tiled.dtype == np.float32
  inside = ~_tile_border_mask(*shape, 16, 6)
  np.testing.assert_allclose(tiled[inside], whole[inside], atol=1e-6)
  # Near tile borders blending keeps the seams small.
  assert np.abs(tiled - whole).max() < 0.1
  assert all(len(batch) <= 5 for batch in fixed.inputs)


def test_fully_convolutional_models_tile_beyond_max_pixels():
  image = np.random.default_rng(1).random((100, 90)).astype(np.float32)
  fake = FakeDenoiser(box_blur, size_multiple=32)
  whole = tiling.denoise_image(fake, image)
  assert fake.inputs[-1].shape == (1, 100, 90, 1)
  tiled = tiling.denoise_image(fake, image, tile=64, overlap=16,
                                  max_pixels=1000)
  assert fake.inputs[-1].shape[1:3] == (64, 64)
  # Tiles start at multiples of the model's size multiple: stride 32, not 48.
  inside = ~_tile_border_mask(100, 90, 64, 16, align=32)
  np.testing.assert_allclose(tiled[inside], whole[inside], atol=1e-6)


# ------------------------------------------------------------ files, errors


def test_unreadable_file_is_reported_not_fatal(tmp_path, caplog):
  folder = tmp_path / 'in'
  (folder / 'sub').mkdir(parents=True)
  Image.fromarray(gradient(20, 20, 255).astype(np.uint8)).save(folder / 'a.png')
  (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
  (folder / 'broken.dcm').write_bytes(b'nope')
  Image.fromarray(gradient(30, 20, 255).astype(np.uint8)).save(
      folder / 'sub' / 'b.png')
  (folder / 'notes.txt').write_text('not an image, skipped')
  with caplog.at_level('ERROR'):
    failed = folder_lib.denoise_files(FakeDenoiser(), [str(folder)],
                                      str(tmp_path / 'out'))
  assert failed == 2
  assert os.path.exists(tmp_path / 'out' / 'a.png')
  assert os.path.exists(tmp_path / 'out' / 'sub' / 'b.png')
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert len(errors) == 2 and all('\n' not in e for e in errors)
  assert any('broken.png' in e for e in errors)
  assert any('broken.dcm' in e for e in errors)


def test_never_overwrites_inputs_and_asks_before_outputs(tmp_path):
  pixels = gradient(20, 20, 255).astype(np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'a.png')
  before = (tmp_path / 'a.png').read_bytes()
  invert = FakeDenoiser(lambda x: 1 - x)
  # --out is the input's folder: refused even with --overwrite.
  assert folder_lib.denoise_files(invert, [str(tmp_path / 'a.png')],
                                  str(tmp_path), overwrite=True) == 1
  assert (tmp_path / 'a.png').read_bytes() == before
  out = tmp_path / 'out'
  assert folder_lib.denoise_files(invert, [str(tmp_path / 'a.png')],
                                  str(out)) == 0
  first = (out / 'a.png').read_bytes()
  assert folder_lib.denoise_files(FakeDenoiser(), [str(tmp_path / 'a.png')],
                                  str(out)) == 1  # Exists, no --overwrite.
  assert (out / 'a.png').read_bytes() == first
  assert folder_lib.denoise_files(FakeDenoiser(), [str(tmp_path / 'a.png')],
                                  str(out), overwrite=True) == 0
  assert (out / 'a.png').read_bytes() != first


def test_missing_input_is_reported(tmp_path):
  assert folder_lib.denoise_files(
      FakeDenoiser(), [str(tmp_path / 'nope.png')], str(tmp_path / 'out')) == 1


def test_cli_end_to_end(tmp_path):
  workdir = make_workdir(str(tmp_path / 'run'), tiny_unet_config())
  Image.fromarray(gradient(40, 50, 65535).astype(np.uint16)).save(
      tmp_path / 'scan.png')
  (tmp_path / 'bad.jpeg').write_bytes(b'\xff\xd8garbage')
  cmd = [sys.executable, '-m', 'xdn.cli.denoise', f'--workdir={workdir}',
         f'--out={tmp_path / "out"}', str(tmp_path / 'scan.png'),
         str(tmp_path / 'bad.jpeg'),
         # Tiles through the real U-Net (32 px, aligned to 32).
         '--tile=32', '--overlap=8', '--max_pixels=1000', '--batch_size=4']
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 1, result.stderr[-2000:]  # One file failed.
  lines = [l for l in result.stderr.splitlines() if 'bad.jpeg' in l]
  errors = [l for l in lines if l.startswith('E')]
  assert len(errors) == 1 and 'cannot decode' in errors[0]
  assert 'Traceback' not in result.stderr
  # The closing line lists the failed files.
  assert [l for l in lines if l.startswith('W')][0].endswith(
      f'1 failed: {tmp_path / "bad.jpeg"}')
  out = np.asarray(Image.open(tmp_path / 'out' / 'scan.png'))
  assert out.shape == (40, 50) and out.dtype == np.uint16
  assert 0 < out.mean() < 65535  # Not blank: the untrained model is ~id.


def test_example_runs_as_the_readme_says(tmp_path):
  # The README's first command, on a fresh install: the shipped example,
  # its noise report and a before/after picture.
  cmd = [sys.executable, '-m', 'xdn.cli.denoise', '--example',
         f'--out={tmp_path / "denoised"}']
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  out = tmp_path / 'denoised'
  for name in ('chest_pa_nema_rg1.png', 'chest_pa_nema_rg1_noise.json',
               'chest_pa_nema_rg1_noise.png', 'before_after.png',
               'levels.png'):
    assert (out / name).stat().st_size > 1000, name
  # The noise report has the after side: the denoised copy measured in the
  # input's flat regions.
  import json  # pylint: disable=g-import-not-at-top
  after = json.loads((out / 'chest_pa_nema_rg1_noise.json').read_text())[
      'after']
  assert 0 < after['std_ratio'] < 1 and after['fine_noise_kept'] < 0.9
  assert 'strength medium' in result.stderr
  from xdn import examples  # pylint: disable=g-import-not-at-top
  before = np.asarray(Image.open(examples.EXAMPLE), np.float64)
  after = np.asarray(Image.open(out / 'chest_pa_nema_rg1.png'), np.float64)
  assert after.shape == before.shape and after.dtype == before.dtype
  # Denoised: the fine-scale (pixel-to-pixel) variation drops (at the
  # default 'medium', which keeps texture, by about a fifth) ...
  fine = lambda x: np.std(np.diff(x, axis=1))
  assert fine(after) < 0.9 * fine(before)
  # ... while the image stays the same picture.
  assert np.abs(after - before).mean() < 0.01 * 65535
  assert 'Estimated noise' in result.stderr and 'correlation' in result.stderr
  # The factor this image's noise got from the calibrated table.
  assert re.search(r'told 0\.\d\d x it \(strength medium\)', result.stderr)


@pytest.mark.parametrize('text,sigma,rho', [
    ('gaussian:25', 25.0, 0.0), ('correlated_gaussian:20,0.4', 20.0, 0.4),
    ('correlated_gaussian:20,0.6,0.2', 20.0, 0.4)])
def test_noise_spec_states_a_correlated_noise(text, sigma, rho):
  level = told.parse_noise(text, read_noise=2.0)
  assert level.sigma == pytest.approx(sigma) and level.correlation == (
      pytest.approx(rho))
  assert told.parse_noise('auto', read_noise=2.0) is None


@pytest.mark.parametrize('text', ['correlated_gaussian:20,x',
                                  'gaussian:20,0.4', 'correlated_gaussian:'
                                  '20,1.5', 'none'])
def test_bad_noise_spec_is_one_line_naming_it(text):
  with pytest.raises(errors.UserError, match='noise') as e:
    told.parse_noise(text, read_noise=2.0)
  assert '\n' not in str(e.value) and '--' not in str(e.value)  # No flag.


def test_bad_noise_flag_names_the_flag(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'xdn.cli.denoise', '--noise=gaussian:20,0.4',
       f'--out={tmp_path / "out"}', str(tmp_path / 'missing.png')],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: --noise: ') and 'gaussian:20,0.4' in last


def test_overlapped_folder_equals_one_file_after_the_other(tmp_path, caplog):
  """Decoding the next file and writing the last while the model runs
  changes no output byte, no order and no error line."""
  folder = tmp_path / 'in'
  folder.mkdir()
  sizes = [(40, 30), (24, 52), (40, 30), (33, 33)]
  for i, (h, w) in enumerate(sizes):
    Image.fromarray(gradient(h, w, 65535, seed=i).astype(np.uint16)).save(
        folder / f'{i}.png')
  (folder / '1b.png').write_bytes(b'\x89PNG\r\n\x1a\ncut short')
  with caplog.at_level('INFO'):
    failed = folder_lib.denoise_files(FakeDenoiser(box_blur), [str(folder)],
                                      str(tmp_path / 'out'))
  assert failed == 1
  progress = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith('[')]
  order = [m.split(' ')[1] for m in progress]
  assert order == sorted(order) and len(order) == 4, progress
  names = sorted(p.name for p in folder.iterdir())
  # The log reports files in input order, the failure in its place.
  lines = [r.getMessage() for r in caplog.records
           if r.getMessage().startswith('[') or '1b.png' in r.getMessage()]
  assert '1b.png' in lines[2] and names.index('1b.png') == 2
  for i in range(len(sizes)):
    one = tmp_path / f'one{i}'
    folder_lib.denoise_one_file(FakeDenoiser(box_blur),
                                str(folder / f'{i}.png'), f'{i}.png', str(one))
    assert (one / f'{i}.png').read_bytes() == (
        tmp_path / 'out' / f'{i}.png').read_bytes()
