"""xdn.noise.synthetic: empirical statistics match theory; purity and edge cases.

Statistics are measured without clipping (`clip=False`) where clipping
would bias them, on flat images so that every pixel has the same law.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xdn.configs import default
from xdn.noise import synthetic as noise

# 4 x 256 x 256 = 262144 samples per statistic: the relative standard error
# of a variance estimate is about sqrt(2 / n) = 0.3%, so 3% tolerances
# fail only on real mistakes.
SHAPE = (4, 256, 256, 1)
RTOL = 0.03


def flat(value: float, shape=SHAPE) -> jax.Array:
  return jnp.full(shape, value, jnp.float32)


def key(seed: int = 0) -> jax.Array:
  return jax.random.key(seed)


# ------------------------------------------------------------- statistics


@pytest.mark.parametrize('sigma', [5.0, 25.0, 50.0])
def test_gaussian_mean_and_std(sigma):
  x = flat(0.5)
  noisy = noise.add_noise(key(), x, 'gaussian', sigma, clip=False)
  residual = np.asarray(noisy - x)
  assert abs(residual.mean()) < 3 * sigma / 255 / np.sqrt(residual.size)
  np.testing.assert_allclose(residual.std(), sigma / 255, rtol=RTOL)


def test_gaussian_per_image_levels():
  sigmas = jnp.array([0.0, 10.0, 30.0, 60.0])
  x = flat(0.5)
  noisy = noise.add_noise(key(), x, 'gaussian', sigmas, clip=False)
  stds = np.asarray(noisy - x).reshape(4, -1).std(axis=1)
  assert stds[0] == 0.0
  np.testing.assert_allclose(stds[1:], np.asarray(sigmas[1:]) / 255,
                             rtol=RTOL)


@pytest.mark.parametrize('intensity', [0.1, 0.5, 0.9])
@pytest.mark.parametrize('dose', [20.0, 500.0])
def test_poisson_mean_x_and_variance_x_over_dose(intensity, dose):
  noisy = np.asarray(noise.add_noise(key(), flat(intensity), 'poisson', dose,
                                     clip=False))
  np.testing.assert_allclose(noisy.mean(), intensity, rtol=0.01)
  np.testing.assert_allclose(noisy.var(), intensity / dose, rtol=RTOL)
  # Photon counts are integers: values lie on the grid k / dose.
  counts = noisy * dose
  np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_poisson_gaussian_variance_adds_read_noise():
  intensity, dose, read_noise = 0.4, 200.0, 6.0
  noisy = np.asarray(noise.add_noise(key(), flat(intensity),
                                     'poisson_gaussian', dose, clip=False,
                                     read_noise=read_noise))
  np.testing.assert_allclose(noisy.mean(), intensity, rtol=0.01)
  want = intensity / dose + (read_noise / 255) ** 2
  np.testing.assert_allclose(noisy.var(), want, rtol=RTOL)


@pytest.mark.parametrize('fraction', [0.03, 0.10, 0.25])
def test_salt_and_pepper_fractions(fraction):
  noisy = np.asarray(noise.add_noise(key(), flat(0.5), 'salt_and_pepper',
                                     fraction))
  salt, pepper = (noisy == 1.0).mean(), (noisy == 0.0).mean()
  np.testing.assert_allclose(salt, fraction / 2, rtol=RTOL)
  np.testing.assert_allclose(pepper, fraction / 2, rtol=RTOL)
  # Every other pixel is untouched.
  assert np.all((noisy == 0.5) | (noisy == 0.0) | (noisy == 1.0))
  np.testing.assert_allclose((noisy == 0.5).mean(), 1 - fraction, rtol=RTOL)


@pytest.mark.parametrize('intensity', [0.2, 0.8])
def test_speckle_mean_x_and_variance_x_sigma_squared(intensity):
  sigma = 0.2
  noisy = np.asarray(noise.add_noise(key(), flat(intensity), 'speckle', sigma,
                                     clip=False))
  np.testing.assert_allclose(noisy.mean(), intensity, rtol=0.01)
  np.testing.assert_allclose(noisy.var(), (intensity * sigma) ** 2,
                             rtol=RTOL)


def test_speckle_leaves_black_pixels_black():
  noisy = noise.add_noise(key(), flat(0.0, (1, 32, 32, 1)), 'speckle', 0.5,
                          clip=False)
  assert np.all(np.asarray(noisy) == 0.0)


# ------------------------------------------------------------ properties


def _images(seed: int = 1, shape=(3, 24, 20, 1)) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize('kind', sorted(noise.NOISE_KINDS))
@pytest.mark.parametrize('clip', [True, False])
def test_level_zero_is_identity(kind, clip):
  x = _images()
  noisy = noise.add_noise(key(), x, kind, 0.0, clip=clip)
  np.testing.assert_array_equal(np.asarray(noisy), np.asarray(x))


# Kinds that add noise ('none' leaves every image as it is).
NOISY_KINDS = [k for k in sorted(noise.NOISE_KINDS) if k != 'none']


@pytest.mark.parametrize('kind', NOISY_KINDS)
def test_level_zero_per_image_is_identity_for_that_image(kind):
  x = _images()
  levels = jnp.array([0.0, _typical_level(kind), 0.0])
  noisy = np.asarray(noise.add_noise(key(), x, kind, levels, clip=False))
  np.testing.assert_array_equal(noisy[0], np.asarray(x[0]))
  np.testing.assert_array_equal(noisy[2], np.asarray(x[2]))
  assert not np.array_equal(noisy[1], np.asarray(x[1]))


def _typical_level(kind: str) -> float:
  return {'gaussian': 25.0, 'poisson': 100.0, 'poisson_gaussian': 100.0,
          'salt_and_pepper': 0.1, 'speckle': 0.2, 'none': 0.0,
          'correlated_gaussian': 25.0, 'xray': 400.0}[kind]


@pytest.mark.parametrize('kind', NOISY_KINDS)
def test_same_key_same_noise_other_key_other_noise(kind):
  x = _images()
  level = _typical_level(kind)
  a = noise.add_noise(key(7), x, kind, level)
  b = noise.add_noise(key(7), x, kind, level)
  c = noise.add_noise(key(8), x, kind, level)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize('kind', sorted(noise.NOISE_KINDS))
def test_jit_matches_eager(kind):
  x = _images()
  level = _typical_level(kind)
  jitted = jax.jit(noise.add_noise, static_argnames=('kind', 'clip'))
  np.testing.assert_allclose(
      np.asarray(jitted(key(3), x, kind=kind, level=level)),
      np.asarray(noise.add_noise(key(3), x, kind, level)), atol=1e-6)


@pytest.mark.parametrize('kind,levels', [
    ('gaussian', [1e-3, 255.0, 1e4]),
    ('poisson', [1e-3, 1.0, 1e6]),
    ('poisson_gaussian', [1e-3, 1.0, 1e6]),
    ('salt_and_pepper', [1e-4, 0.5, 1.0]),
    ('speckle', [1e-3, 1.0, 100.0]),
])
@pytest.mark.parametrize('clip', [True, False])
def test_values_stay_finite_and_clip_to_unit_range(kind, levels, clip):
  # Include exact 0 and 1 pixels, the edges of the intensity range.
  x = _images().at[:, 0].set(0.0).at[:, 1].set(1.0)
  for level in levels:
    noisy = np.asarray(noise.add_noise(key(), x, kind, level, clip=clip))
    assert noisy.shape == x.shape and noisy.dtype == np.float32
    assert np.all(np.isfinite(noisy)), (kind, level)
    if clip:
      assert noisy.min() >= 0.0 and noisy.max() <= 1.0


def test_clipping_saturates_rather_than_wrapping():
  # The seed notebooks added noise to uint8 arrays, so 255 + 3 became 2.
  x = flat(1.0, (1, 64, 64, 1))
  noisy = np.asarray(noise.add_noise(key(), x, 'gaussian', 50.0))
  # Half the pixels saturate at 1, the rest fall below it; none wrap to 0.
  np.testing.assert_allclose((noisy == 1.0).mean(), 0.5, atol=0.05)
  assert noisy.min() > 0.1 and noisy.mean() > 0.9


# ----------------------------------------------------- presets and config


def test_presets_are_the_seed_tiers():
  want = {'gaussian_easy': 16.1, 'gaussian_medium': 22.8,
          'gaussian_hard': 36.1, 'salt_and_pepper_easy': 0.03,
          'salt_and_pepper_medium': 0.10, 'salt_and_pepper_hard': 0.25}
  assert set(noise.PRESETS) == set(want)
  for name, level in want.items():
    kind, got = noise.resolve(name, 999.0)  # A preset ignores the level.
    assert kind == name.rsplit('_', 1)[0]
    np.testing.assert_allclose(got, level, atol=0.05)


def test_resolve_passes_kinds_through():
  assert noise.resolve('poisson', 30) == ('poisson', 30.0)


def test_resolve_rejects_unknown_kind():
  with pytest.raises(ValueError, match=r"unknown noise kind 'gausian'.*"
                     r"noise\.kind"):
    noise.resolve('gausian', 25.0)


def test_resolve_rejects_negative_level():
  with pytest.raises(ValueError, match=r'noise\.level'):
    noise.resolve('gaussian', -1.0)


def _noise_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      kind='gaussian', level=25.0, min_level=0.0, max_level=0.0,
      read_noise=2.0, clip=False))
  config.update(overrides)
  return config


def test_check_config_rejects_bad_ranges():
  noise.check_config(_noise_config(min_level=5.0, max_level=55.0))
  with pytest.raises(ValueError, match='max_level'):
    noise.check_config(_noise_config(min_level=30.0, max_level=10.0))
  with pytest.raises(ValueError, match='min_level'):
    noise.check_config(_noise_config(min_level=-1.0))


def test_blind_corrupt_draws_per_image_levels_within_range():
  lo, hi = 10.0, 40.0
  config = _noise_config(min_level=lo, max_level=hi)
  assert noise.is_blind(config)
  x = flat(0.5, (32, 128, 128, 1))
  noisy = noise.corrupt(key(), x, config, train=True)
  sigmas = np.asarray(noisy - x).reshape(32, -1).std(axis=1) * 255
  # Per-image std has a ~0.6% standard error at 128 x 128 pixels.
  assert sigmas.min() >= lo * (1 - RTOL) and sigmas.max() <= hi * (1 + RTOL)
  assert sigmas.max() - sigmas.min() > (hi - lo) / 3  # Levels differ.
  assert len(np.unique(np.round(sigmas, 1))) > 16


def test_corrupt_for_evaluation_uses_the_fixed_level():
  config = _noise_config(level=20.0, min_level=0.0, max_level=55.0)
  x = flat(0.5, (8, 128, 128, 1))
  noisy = noise.corrupt(key(), x, config, train=False)
  sigmas = np.asarray(noisy - x).reshape(8, -1).std(axis=1) * 255
  np.testing.assert_allclose(sigmas, 20.0, rtol=RTOL)


def test_corrupt_resolves_presets_and_clips():
  config = _noise_config(kind='salt_and_pepper_hard', level=0.0, clip=True)
  noisy = np.asarray(noise.corrupt(key(), flat(0.5), config, train=False))
  np.testing.assert_allclose((noisy != 0.5).mean(), 0.25, rtol=RTOL)


def test_training_mixture_draws_kinds_and_reports_their_variance():
  config = default.get_config().noise
  config.kind = 'gaussian'
  config.train_kinds = 'gaussian,poisson_gaussian'
  config.min_level, config.max_level = 5.0, 50.0
  config.min_dose, config.max_dose = 20.0, 500.0
  config.max_read_noise = 4.0
  config.clip = False
  clean = jnp.full((64, 48, 48, 1), 0.5)
  keys = jax.random.split(jax.random.key(0), 64)
  noisy, a, b, rho, _ = jax.vmap(lambda k, x: noise.corrupt_with_params(
      k, x[None], config, train=True))(keys, clean)
  noisy, a, b = noisy[:, 0], a[:, 0], b[:, 0]
  np.testing.assert_array_equal(rho, 0.0)  # White kinds only.
  poisson = np.asarray(a) > 0
  assert 10 < poisson.sum() < 54  # Both kinds drawn.
  doses = 1 / np.asarray(a)[poisson]
  assert doses.min() >= 20 - 1e-3 and doses.max() <= 500 + 1e-3
  sigmas = 255 * np.sqrt(np.asarray(b)[~poisson])
  assert sigmas.min() >= 5 - 1e-3 and sigmas.max() <= 50 + 1e-3
  # The reported variance a * x + b is the noise's variance.
  expected = np.asarray(a) * 0.5 + np.asarray(b)
  measured = np.asarray(jnp.var(noisy - 0.5, axis=(1, 2, 3)))
  np.testing.assert_allclose(measured, expected, rtol=0.15)


def test_noise_std_map_follows_the_variance_model():
  images = jnp.concatenate([jnp.full((1, 16, 16, 1), 0.2),
                            jnp.full((1, 16, 16, 1), 0.8)])
  std = noise.noise_std_map(images, jnp.array([0.01, 0.0]),
                            jnp.array([0.0, 0.04]))
  np.testing.assert_allclose(std[0], np.sqrt(0.01 * 0.2), rtol=1e-5)
  np.testing.assert_allclose(std[1], 0.2, rtol=1e-5)
  with_map = noise.with_noise_map(images, 0.0, 0.01)
  assert with_map.shape == (2, 16, 16, 2)
  np.testing.assert_array_equal(with_map[..., :1], images)
