"""xdn.evaluation.baselines: classical denoisers, told the level, beat the
noisy input; BM3D is the optional extra xdn[baselines]."""

import multiprocessing

import jax
import numpy as np
import pytest

from xdn.evaluation import baselines
from xdn.noise import synthetic as noise


def smooth_image(size: int = 48, seed: int = 0) -> np.ndarray:
  """A radiograph-like image: smooth shading, an edge, values in [0.1, 0.9]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  image = 0.5 + 0.25 * np.sin(3 * xx + 2 * yy + rng.uniform(0, 3))
  image[size // 3:2 * size // 3, size // 4:size // 2] += 0.15  # An edge.
  return np.clip(image, 0.1, 0.9).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def make_noisy(clean: np.ndarray, kind: str, level: float,
               seed: int = 0) -> np.ndarray:
  noisy = noise.add_noise(jax.random.key(seed), clean[None, ..., None], kind,
                          level)
  return np.asarray(noisy)[0, ..., 0]


FAST = [name for name in baselines.BASELINES if name not in baselines.SLOW]
BM3D_MISSING = ('bm3d is the optional extra xdn[baselines] (non-commercial '
                'licence)')


def needs(name: str) -> None:
  """Skips the test when baseline `name`'s optional package is missing."""
  if name in baselines.OPTIONAL:
    pytest.importorskip(baselines.OPTIONAL[name], reason=BM3D_MISSING)
SETTINGS = [('gaussian', 25.0), ('poisson', 50.0), ('poisson_gaussian', 50.0),
            ('salt_and_pepper', 0.10), ('speckle', 0.2)]


@pytest.mark.parametrize('name', list(baselines.BASELINES))
@pytest.mark.parametrize('kind,level', SETTINGS)
def test_output_is_a_finite_float32_image_in_unit_range(name, kind, level):
  if name in baselines.SLOW and kind != 'gaussian':
    pytest.skip('slow baseline: one setting is enough')
  needs(name)
  clean = smooth_image(32)
  out = baselines.apply(name, make_noisy(clean, kind, level), kind, level)
  assert out.shape == clean.shape and out.dtype == np.float32
  assert np.all(np.isfinite(out))
  assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize('name', FAST)
@pytest.mark.parametrize('kind', sorted(noise.NOISE_KINDS))
def test_level_zero_returns_the_input(name, kind):
  clean = smooth_image(24)
  np.testing.assert_array_equal(baselines.apply(name, clean, kind, 0.0),
                                clean)


@pytest.mark.parametrize('name', [n for n in baselines.BASELINES
                                  if n != 'noisy'])
@pytest.mark.parametrize('kind,level', [('gaussian', 25.0), ('poisson', 50.0),
                                        ('speckle', 0.2)])
def test_denoisers_beat_the_noisy_input(name, kind, level):
  if name in baselines.SLOW and kind != 'gaussian':
    pytest.skip('slow baseline: one setting is enough')
  needs(name)
  clean = smooth_image(48)
  noisy = make_noisy(clean, kind, level)
  gain = psnr(baselines.apply(name, noisy, kind, level), clean) - psnr(
      noisy, clean)
  assert gain > 2.0, (name, kind, gain)


def test_median_removes_salt_and_pepper():
  clean = smooth_image(48)
  for fraction in (0.03, 0.10, 0.25):
    noisy = make_noisy(clean, 'salt_and_pepper', fraction)
    out = baselines.apply('median', noisy, 'salt_and_pepper', fraction)
    assert psnr(out, clean) > psnr(noisy, clean) + 10, fraction


def test_noisy_baseline_is_the_input():
  clean = smooth_image(16)
  noisy = make_noisy(clean, 'gaussian', 25.0)
  np.testing.assert_array_equal(
      baselines.apply('noisy', noisy, 'gaussian', 25.0), noisy)


@pytest.mark.parametrize('kind,level', [('speckle', 0.3),
                                        ('salt_and_pepper', 0.1),
                                        ('gaussian', 20.0)])
def test_noise_std_matches_the_actual_noise(kind, level):
  clean = np.tile(smooth_image(128), (2, 2))
  noisy = make_noisy(clean, kind, level)
  if kind != 'gaussian':  # Its clipping lowers the std; the others stay.
    actual = np.std(noisy - clean)
    np.testing.assert_allclose(baselines.noise_std(noisy, kind, level),
                               actual, rtol=0.1)
  else:
    assert baselines.noise_std(noisy, kind, level) == level / 255


def test_noise_std_refuses_poisson():
  with pytest.raises(ValueError, match='Anscombe|stabilised'):
    baselines.noise_std(smooth_image(8), 'poisson', 10.0)


@pytest.mark.parametrize('read_sigma', [0.0, 3.0])
@pytest.mark.parametrize('lam', [4.0, 20.0, 200.0])
def test_anscombe_stabilises_variance_and_inverts_without_bias(lam,
                                                               read_sigma):
  rng = np.random.default_rng(0)
  counts = rng.poisson(lam, 400_000) + rng.normal(0, read_sigma, 400_000)
  z = baselines.anscombe(counts, read_sigma)
  np.testing.assert_allclose(z.var(), 1.0, rtol=0.05)
  # The exact unbiased inverse maps E[z] back to the mean count.
  np.testing.assert_allclose(baselines.inverse_anscombe(z.mean(), read_sigma),
                             lam, rtol=0.01)


def test_unknown_baseline_names_the_choices():
  with pytest.raises(ValueError, match=r"unknown baseline 'bm4d'.*'median'"):
    baselines.apply('bm4d', smooth_image(8), 'gaussian', 25.0)


def test_batch_input_is_refused_with_a_hint():
  with pytest.raises(ValueError, match=r'\[H, W\]'):
    baselines.apply('tv', np.zeros((2, 8, 8), np.float32), 'gaussian', 25.0)


def test_apply_many_in_a_pool_matches_serial():
  needs('bm3d')
  clean = np.stack([smooth_image(32, seed) for seed in range(3)])[..., None]
  noisy = np.asarray(noise.add_noise(jax.random.key(0), clean, 'gaussian',
                                     25.0))
  serial = baselines.apply_many('bm3d', noisy, 'gaussian', 25.0)
  # 'spawn': forking a process that has started JAX's threads can deadlock.
  with multiprocessing.get_context('spawn').Pool(2) as pool:
    pooled = baselines.apply_many('bm3d', noisy, 'gaussian', 25.0, pool=pool)
  assert serial.shape == clean.shape and serial.dtype == np.float32
  np.testing.assert_allclose(pooled, serial, atol=1e-6)
  assert psnr(serial, clean) > psnr(noisy, clean) + 3
