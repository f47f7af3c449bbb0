"""Fidelity training: lesion twins, the strength weights, the texture term,
the X-ray law told to the model, and one train step with all of it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import jax_utils

from xdn.configs import default
from xdn import errors
from xdn.losses import fidelity as fidelity_loss
from xdn import models
from xdn.noise import physics as noise_physics
from xdn.noise import synthetic as noise
from xdn.training import train
from xdn.workdir import state as state_lib


def _fidelity_config(**fields):
  config = default.get_config().fidelity
  config.weight, config.texture_weight = 0.3, 0.05
  config.update(fields)
  return config


def test_strength_weights_vanish_at_full_strength():
  config = _fidelity_config(min_strength=0.5)
  w = fidelity_loss.weight_of_strength(jnp.array([1.0, 0.75, 0.5, 0.3]),
                                       config)
  np.testing.assert_allclose(w, [0.0, 0.25, 1.0, 1.0], atol=1e-6)
  s = fidelity_loss.draw_strength(jax.random.key(0), 4000,
                                  _fidelity_config(full_fraction=0.25))
  assert np.mean(np.asarray(s) == 1.0) == pytest.approx(0.25, abs=0.03)
  assert float(jnp.min(s)) >= 0.5


def test_twins_share_their_base_and_scale_with_the_noise():
  clean = jnp.full((8, 64, 64, 1), 0.5)
  sigma = jnp.array([5.0, 10.0, 20.0, 40.0]) / 255
  twins = fidelity_loss.lesion_twins(jax.random.key(1), clean, sigma,
                                     _fidelity_config())
  assert twins.targets.shape == (8, 64, 64, 1)
  np.testing.assert_array_equal(twins.targets[:4], clean[:4])
  np.testing.assert_allclose(twins.targets[4:] - twins.targets[:4],
                             twins.lesion, atol=1e-7)
  np.testing.assert_array_equal(twins.strength[:4], twins.strength[4:])
  # The contrast follows the noise: NPW d' in [1, 4] at each image's sigma.
  peak = np.abs(np.asarray(twins.lesion)).max((1, 2, 3))
  assert np.all(peak > 0)
  d_prime = peak * np.sqrt(np.pi) / np.asarray(sigma)
  sizes_ok = d_prime / 8.0 <= 4.0 + 1e-4  # size <= 8 px: d' / size <= c.
  assert sizes_ok.all()


def test_transfer_error_is_zero_when_the_lesion_passes():
  lesion = jnp.zeros((2, 32, 32, 1)).at[:, 16, 16].set(0.02)
  base = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
  np.testing.assert_allclose(
      fidelity_loss.transfer_error(base, base + lesion, lesion), 0.0,
      atol=1e-6)
  # Erasing the lesion entirely costs 1; keeping half costs 1/4.
  np.testing.assert_allclose(
      fidelity_loss.transfer_error(base, base, lesion), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
      fidelity_loss.transfer_error(base, base + 0.5 * lesion, lesion), 0.25,
      rtol=1e-5)


def test_texture_error_is_zero_for_the_same_grain_at_any_level():
  white = jax.random.normal(jax.random.key(2), (4, 64, 64, 1))
  np.testing.assert_allclose(
      fidelity_loss.texture_error(0.1 * white, white), 0.0, atol=1e-5)
  spectrum = fidelity_loss.radial_spectrum(white)
  assert float(jnp.std(spectrum)) < 0.15  # White noise: flat.
  smooth = jnp.asarray(np.cumsum(np.cumsum(np.asarray(white), 1), 2))
  assert float(jnp.min(fidelity_loss.texture_error(smooth, white))) > 1.0


def test_bad_fidelity_config_is_refused():
  config = default.get_config()
  config.fidelity.weight = 0.3
  config.batch_size = 7
  with pytest.raises(errors.UserError, match='even'):
    fidelity_loss.check_config(config)
  config.batch_size = 8
  config.fidelity.min_strength = 1.0
  with pytest.raises(errors.UserError, match='min_strength'):
    fidelity_loss.check_config(config)


def test_noise_map_tells_the_xray_law_and_the_strength():
  x = jnp.full((2, 16, 16, 1), 0.6)
  std = noise.noise_std_map(x, 0.0, 0.0, xray_dose=jnp.array([400.0, 0.0]))
  expected = np.sqrt(noise_physics.xray_variance(0.6, 400.0, 1.0))
  np.testing.assert_allclose(std[0], expected, rtol=1e-5)
  np.testing.assert_array_equal(std[1], 0.0)
  maps = noise.with_noise_map(x, 0.0, 0.01, 0.5, scale=jnp.array([1.0, 0.5]))
  np.testing.assert_allclose(maps[1, ..., 1:], 0.5 * maps[0, ..., 1:],
                             rtol=1e-6)


def test_xray_images_are_told_their_own_law_when_asked():
  config = default.get_config().noise
  config.kind, config.level, config.correlation = 'xray', 400.0, 0.3
  clean = jnp.broadcast_to(jnp.linspace(0.2, 0.8, 32)[None, :, None, None],
                           (4, 32, 32, 1))
  key = jax.random.key(0)
  _, a, b, _, dose = noise.corrupt_with_params(key, clean, config,
                                               train=False)
  assert np.all(np.asarray(dose) == 0) and np.all(np.asarray(a) > 0)
  config.xray_law_fraction = 1.0
  _, a, b, _, dose = noise.corrupt_with_params(key, clean, config,
                                               train=False)
  np.testing.assert_array_equal(dose, 400.0)
  np.testing.assert_array_equal(a, 0.0)
  np.testing.assert_array_equal(b, 0.0)
  config.train_kinds, config.xray_law_fraction = 'xray,gaussian', 0.5
  config.min_xray_dose, config.max_xray_dose = 100.0, 1000.0
  clean = jnp.broadcast_to(clean[:1], (64, 32, 32, 1))
  _, _, _, _, dose = noise.corrupt_with_params(key, clean, config,
                                               train=True)
  told = np.asarray(dose) > 0
  assert 3 < told.sum() < 40  # Some X-ray images told their law.


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_a_fidelity_train_step_runs_and_logs_its_terms():
  config = default.get_config()
  config.model = default.model_config('unet', depth=2, base_width=4,
                                      norm='none', use_bias=False,
                                      noise_map=True, correlation_map=True)
  config.noise.kind = 'gaussian'
  config.noise.train_kinds = 'gaussian,correlated_gaussian,xray'
  config.noise.min_level, config.noise.max_level = 5.0, 50.0
  config.noise.max_correlation = 0.5
  config.noise.min_xray_dose, config.noise.max_xray_dose = 100.0, 1000.0
  config.noise.xray_law_fraction = 0.5
  config.fidelity.weight, config.fidelity.texture_weight = 0.3, 0.05
  config.batch_size = 4
  train.check_config(config)
  model = models.create_model(config, bn_axis_name=train.AXIS)
  state = state_lib.create_train_state(config, model, jax.random.key(0),
                                       (32, 32, 1))
  devices = jax.devices()[:1]
  step = train.compile_train_step(config, devices=devices)
  state = jax_utils.replicate(state, devices)
  rng = np.random.default_rng(0)
  batch = np.kron(rng.random((4, 4, 4, 1)), np.ones((1, 8, 8, 1))
                  ).astype(np.float32)[None]
  state, metrics = step(state, batch, jax.random.key(3))
  metrics = {k: float(v[0]) for k, v in metrics.items()}
  for name in ('loss', 'mse', 'twin_transfer_error', 'twin_texture_error'):
    assert np.isfinite(metrics[name]), (name, metrics)
  assert metrics['loss'] >= metrics['mse']
