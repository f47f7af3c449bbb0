"""The model shipped inside xdn: it loads without a workdir and denoises."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn import errors
from xdn import inference
from xdn.inference import ensemble
from xdn.io import images as image_io
from xdn.noise import estimation as noise_estimation
from xdn.noise import synthetic as noise
from xdn import pretrained

SAMPLE = os.path.join(os.path.dirname(__file__), '..', 'xdn', 'data',
                      'chest_xray_sample', 'images')


@pytest.fixture(scope='module')
def shipped():
  return inference.load_pretrained()


def _psnr(a, b):
  return 10 * np.log10(1 / np.mean((np.asarray(a) - np.asarray(b))**2))


def _thumbnails(count=8):
  files = sorted(glob.glob(os.path.join(SAMPLE, '*.png')))[-count:]
  return np.stack([image_io.to_float01(image_io.read_grayscale(f))
                   for f in files])[..., None]


def test_shipped_files_are_small_and_complete():
  size = os.path.getsize(os.path.join(pretrained.FOLDER, pretrained.WEIGHTS))
  assert size < 10 * 2**20
  assert os.path.exists(os.path.join(pretrained.FOLDER, 'MODEL_CARD.md'))
  config, variables, step = pretrained.load()
  assert config.model.noise_map and step > 0
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


def test_missing_weights_are_a_user_error(tmp_path):
  with pytest.raises(errors.UserError, match='reinstall xdn'):
    pretrained.load(str(tmp_path))


@pytest.mark.parametrize('sigma', [15, 50])
def test_shipped_model_denoises_thumbnails_blind(shipped, sigma):
  clean = _thumbnails()
  noisy = np.asarray(noise.add_noise(jax.random.key(sigma),
                                     jnp.asarray(clean), 'gaussian', sigma))
  out = shipped(noisy)  # Estimates each image's noise.
  assert out.shape == clean.shape
  gains = [_psnr(o, c) - _psnr(n, c) for o, n, c in zip(out, noisy, clean)]
  # A floor far below what it reaches, far above doing nothing.
  assert min(gains) > 4.0, gains


def test_told_and_estimated_levels_agree(shipped):
  clean = _thumbnails(4)
  noisy = np.asarray(noise.add_noise(jax.random.key(0), jnp.asarray(clean),
                                     'gaussian', 25.0))
  told = shipped(noisy, [noise_estimation.known_noise('gaussian', 25, 0)] * 4)
  blind = shipped(noisy)
  assert abs(_psnr(told, clean) - _psnr(blind, clean)) < 1.0


def test_tiles_match_the_whole_image(shipped):
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:300, 0:260] / 300
  clean = np.clip(0.5 + 0.3 * np.sin(5 * x) * np.cos(3 * y), 0, 1)
  noisy = np.clip(clean + rng.normal(0, 20 / 255, clean.shape), 0, 1)
  level = noise_estimation.known_noise('gaussian', 20, 0)
  whole = inference.denoise_image(shipped, noisy, noise_level=level)
  tiled = inference.denoise_image(shipped, noisy, tile=128, overlap=32,
                                  noise_level=level)
  assert whole.shape == tiled.shape == noisy.shape
  # Tiles see less context at their borders; the blend keeps them close.
  assert _psnr(tiled, whole) > 40
  assert _psnr(whole, clean) > _psnr(noisy, clean) + 5


def test_small_images_get_the_x8_self_ensemble(shipped):
  images = _thumbnails(2)[:, :, :48]  # Not square: transposes still fit.
  level = [noise_estimation.known_noise('gaussian', 25, 0)] * 2
  ensembled = shipped(images, level)
  plain = inference.Denoiser(shipped.config, shipped.variables, shipped.step,
                             shipped.name, ensemble_max_pixels=0)
  manual = np.mean([
      np.asarray(ensemble.undo_dihedral(
          plain(np.asarray(ensemble.dihedral(images, k)), level), k))
      for k in range(8)], axis=0)
  np.testing.assert_allclose(ensembled, manual, atol=1e-5)
  assert not np.allclose(ensembled, plain(images, level), atol=1e-4)
