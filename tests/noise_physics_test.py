"""Detector noise physics: each kind delivers what it promises.

Correlated Gaussian noise: its pixel std, its neighbour correlation (within
0.02) and its NNPS (integrated within 5 % of the analytic |G(f)|^2, band by
band). X-ray noise: its variance against intensity follows the delta-method
law, its correlation the detector kernel's. And the training mixture draws
correlations and X-ray doses from their ranges and reports them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.configs import default
from xdn.noise import physics as noise_physics
from xdn.noise import synthetic as noise


def _field(rho_y, rho_x, size=256, count=8, seed=0):
  return np.asarray(noise_physics.correlated_normal(
      jax.random.key(seed), (count, size, size, 1), rho_y, rho_x))[..., 0]


def _correlations(field):
  var = np.mean(field**2)
  return (np.mean(field[:, 1:] * field[:, :-1]) / var,
          np.mean(field[:, :, 1:] * field[:, :, :-1]) / var)


@pytest.mark.parametrize('rho', [0.0, 0.2, 0.37, 0.5, 0.68, 0.75])
def test_neighbour_correlation_and_std_as_asked(rho):
  field = _field(rho, rho)
  assert np.std(field) == pytest.approx(1.0, abs=0.01)
  for measured in _correlations(field):
    assert measured == pytest.approx(rho, abs=0.02)


def test_anisotropic_correlation():
  rho_y, rho_x = _correlations(_field(0.65, 0.3))
  assert rho_y == pytest.approx(0.65, abs=0.02)
  assert rho_x == pytest.approx(0.3, abs=0.02)


def test_kernel_width_inverts_the_correlation():
  for rho in (0.1, 0.37, 0.68, 0.85):
    width = noise_physics.kernel_width(rho)
    assert float(noise_physics.neighbour_correlation(width)) == pytest.approx(
        rho, abs=1e-3)
  assert float(noise_physics.kernel_width(0.0)) == 0.0


@pytest.mark.parametrize('rho', [0.37, 0.68])
def test_nnps_matches_the_analytic_one(rho):
  size = 128
  field = _field(rho, rho, size=size, count=32, seed=1)
  measured = np.mean(np.abs(np.fft.fft2(field))**2, 0) / size**2
  analytic = noise_physics.noise_power_spectrum(
      noise_physics.kernel_2d(rho, rho), (size, size))
  # Integrated over the whole plane and over radial bands.
  assert measured.sum() == pytest.approx(analytic.sum(), rel=0.05)
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
  for lo, hi in [(0, 0.1), (0.1, 0.25), (0.25, 0.4)]:
    band = (f >= lo) & (f < hi)
    assert measured[band].sum() == pytest.approx(analytic[band].sum(),
                                                 rel=0.05), (lo, hi)


def test_white_kernel_has_a_flat_nps():
  nps = noise_physics.noise_power_spectrum(noise_physics.kernel_2d(0, 0),
                                           (32, 32), variance=4.0)
  np.testing.assert_allclose(nps, 4.0, rtol=1e-6)


def test_bm3d_psd_has_the_scale_of_the_bm3d_examples():
  # |fft2(kernel)|^2 * M * N with sum(kernel^2) = variance.
  sigma, shape = 0.1, (64, 48)
  psd = noise_physics.bm3d_psd(sigma, 0.5, 0.5, shape)
  kernel = noise_physics.kernel_2d(0.5, 0.5) * sigma
  padded = np.zeros(shape)
  padded[:kernel.shape[0], :kernel.shape[1]] = kernel
  expected = np.abs(np.fft.fft2(padded))**2 * shape[0] * shape[1]
  np.testing.assert_allclose(psd, expected, rtol=1e-5)


@pytest.mark.parametrize('x', [0.2, 0.5, 0.8])
@pytest.mark.parametrize('dose', [400.0, 4000.0])
def test_xray_variance_follows_its_law(x, dose):
  clean = jnp.full((4, 128, 128, 1), x)
  noisy = np.asarray(noise_physics.add_xray_noise(
      jax.random.key(2), clean, dose, rho=0.0, electronic=2.0))
  expected = float(noise_physics.xray_variance(x, dose, 2.0))
  assert np.var(noisy - x) == pytest.approx(expected, rel=0.05)
  # Brighter (more attenuating) regions are noisier: fewer quanta.
  assert abs(np.mean(noisy) - x) < 0.1 * np.sqrt(expected) + 2e-3


def test_xray_noise_is_correlated_by_the_detector_kernel():
  clean = jnp.full((4, 128, 128, 1), 0.4)
  noisy = np.asarray(noise_physics.add_xray_noise(
      jax.random.key(3), clean, 2000.0, rho=0.6, electronic=0.0))[..., 0]
  for measured in _correlations(noisy - noisy.mean()):
    assert measured == pytest.approx(0.6, abs=0.02)


def test_xray_zero_dose_is_identity():
  clean = jnp.linspace(0, 1, 64).reshape(1, 8, 8, 1)
  out = noise_physics.add_xray_noise(jax.random.key(0), clean, 0.0)
  np.testing.assert_array_equal(out, clean)


def test_xray_affine_params_fit_the_law():
  clean = jnp.linspace(0.1, 0.9, 64 * 64).reshape(1, 64, 64, 1)
  a, b = noise_physics.xray_affine_params(clean, jnp.array([1000.0]))
  xs = np.linspace(0.1, 0.9, 9)
  law = np.asarray(noise_physics.xray_variance(xs, 1000.0))
  line = float(a[0]) * xs + float(b[0])
  assert float(a[0]) > 0
  # A least-squares line through an exponential: right on average.
  assert np.mean(line) == pytest.approx(np.mean(law), rel=0.1)
  assert float(b[0]) >= 0


def test_training_draws_correlations_and_xray_doses():
  config = default.get_config().noise
  config.train_kinds = 'correlated_gaussian,xray'
  config.min_level, config.max_level = 10.0, 30.0
  config.min_correlation, config.max_correlation = 0.2, 0.7
  config.min_xray_dose, config.max_xray_dose = 100.0, 10000.0
  noise.check_config(config)
  # A gradient, so that X-ray noise shows its signal dependence (a > 0).
  clean = jnp.broadcast_to(jnp.linspace(0.2, 0.8, 32)[None, :, None, None],
                           (48, 32, 32, 1))
  keys = jax.random.split(jax.random.key(0), 48)
  noisy, a, b, rho, _ = jax.vmap(lambda k, x: noise.corrupt_with_params(
      k, x[None], config, train=True))(keys, clean)
  rho = np.asarray(rho)[:, 0]
  assert rho.min() >= 0.2 - 1e-6 and rho.max() <= 0.7 + 1e-6
  assert np.ptp(rho) > 0.2  # Drawn per image.
  xray = np.asarray(a)[:, 0] > 0
  assert 5 < xray.sum() < 43  # Both kinds drawn.
  sigmas = 255 * np.sqrt(np.asarray(b)[:, 0][~xray])
  assert sigmas.min() >= 10 - 1e-3 and sigmas.max() <= 30 + 1e-3


@pytest.mark.parametrize('field,value', [
    ('max_correlation', 0.95), ('correlation', -0.1),
    ('min_xray_dose', 0.0), ('electronic_noise', -1.0)])
def test_bad_noise_config_is_refused(field, value):
  config = default.get_config().noise
  config.max_xray_dose = 1000.0
  config.min_xray_dose = 100.0
  config[field] = value
  with pytest.raises(Exception, match=field):
    noise.check_config(config)
