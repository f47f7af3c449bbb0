"""The correlation-map U-Net (shipped model v2): shapes, gradients, a
training step on correlated noise with lesions, and the widened warm start
that starts it exactly where the two-channel model was."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.train_test import batch_of, make_config, make_state, run_steps
from xdn.noise import synthetic as noise
from xdn.training import warm_start

FIELDS = dict(depth=2, base_width=8, norm='none', use_bias=False,
              noise_map=True)


def test_three_channel_input_one_channel_output_and_gradients():
  config = make_config('unet', correlation_map=True, **FIELDS)
  state = make_state(config, size=32)
  x = jnp.asarray(batch_of(2, 32))
  inputs = noise.with_noise_map(x, 0.0, 0.01, jnp.array([0.0, 0.6]))
  assert inputs.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(inputs[1, ..., 2], 0.6 * inputs[1, ..., 1])
  out = state.apply_fn({'params': state.params}, inputs)
  assert out.shape == (2, 32, 32, 1)
  grads = jax.grad(lambda p: jnp.mean(
      (state.apply_fn({'params': p}, inputs) - x)**2))(state.params)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
  assert all(np.isfinite(norms)) and all(n > 0 for n in norms)


def test_training_step_on_correlated_noise_and_lesions_lowers_the_loss():
  config = make_config('unet', correlation_map=True, **FIELDS)
  config.noise.train_kinds = 'correlated_gaussian,xray,gaussian'
  config.noise.min_level, config.noise.max_level = 10.0, 40.0
  config.noise.max_correlation = 0.7
  config.noise.min_xray_dose, config.noise.max_xray_dose = 100.0, 5000.0
  config.lesions.rate = 0.5
  config.optimizer.learning_rate = 2e-3
  state = make_state(config, size=32)
  _, history = run_steps(config, state, batch_of(8, 32), 15,
                         jax.devices()[:1])
  assert np.all(np.isfinite(history))
  assert np.mean(history[-3:]) < np.mean(history[:3])


def test_widened_warm_start_computes_what_the_old_model_did():
  old_config = make_config('unet', **FIELDS)
  old = make_state(old_config, size=32)
  new_config = make_config('unet', correlation_map=True, **FIELDS)
  init = warm_start.Init('test', ml_collections.ConfigDict(
      old_config.model.to_dict()), {'params': old.params})
  merged = warm_start.with_model(new_config, init)
  assert merged.model.correlation_map  # The run keeps its widening field.
  widened = warm_start.apply(make_state(merged, size=32), init)
  x = jnp.asarray(batch_of(2, 32))
  before = old.apply_fn({'params': old.params},
                        noise.with_noise_map(x, 0.0, 0.01))
  # Any correlation: the new channel's weights start at zero.
  after = widened.apply_fn({'params': widened.params},
                           noise.with_noise_map(x, 0.0, 0.01, 0.5))
  np.testing.assert_allclose(after, before, atol=1e-6)
  kernel = widened.params['down0']['conv1']['kernel']
  np.testing.assert_array_equal(kernel[:, :, 2], 0.0)


def test_strength_map_starts_as_v2_and_is_told_apart_from_the_noise():
  """v3's fourth channel: zero at full strength; widened from a
  three-channel model at zero weights; the Denoiser fills it, and a
  strength above 1 scales the noise maps instead."""
  from xdn.inference import denoiser as inference  # pylint: disable=g-import-not-at-top
  old_config = make_config('unet', correlation_map=True, **FIELDS)
  old = make_state(old_config, size=32)
  new_config = make_config('unet', correlation_map=True, strength_map=True,
                           **FIELDS)
  init = warm_start.Init('test', ml_collections.ConfigDict(
      old_config.model.to_dict()), {'params': old.params})
  merged = warm_start.with_model(new_config, init)
  assert merged.model.strength_map
  widened = warm_start.apply(make_state(merged, size=32), init)
  x = jnp.asarray(batch_of(2, 32))
  maps = noise.with_noise_map(x, 0.0, 0.01, 0.3, strength=jnp.array([1.0,
                                                                     0.4]))
  assert maps.shape == (2, 32, 32, 4)
  np.testing.assert_array_equal(maps[0, ..., 3], 0.0)
  np.testing.assert_allclose(maps[1, ..., 3], 0.6 * maps[1, ..., 1],
                             rtol=1e-6)
  before = old.apply_fn({'params': old.params}, maps[..., :3])
  after = widened.apply_fn({'params': widened.params}, maps)
  np.testing.assert_allclose(after, before, atol=1e-6)
  # Through the Denoiser, with a strength-map weight that makes it count.
  params = jax.tree.map(lambda p: p, widened.params)
  kernel = params['down0']['conv1']['kernel']
  params['down0']['conv1']['kernel'] = kernel.at[:, :, 3].set(0.5)
  told = [inference.NoiseEstimate('gaussian', 0.0, 0.01)]
  denoiser = inference.Denoiser(merged, {'params': params}, 0, 'v3',
                                strength='full', ensemble_max_pixels=0)
  images = np.asarray(x[:1])
  out = {s: denoiser.at_strength(s)(images, told) for s in (1.0, 0.5, 1.5)}
  assert not np.allclose(out[1.0], out[0.5], atol=1e-4)
  direct = lambda inputs: np.clip(np.asarray(widened.apply_fn(
      {'params': params}, inputs)), 0, 1)
  np.testing.assert_allclose(out[0.5], direct(noise.with_noise_map(
      images, 0.0, 0.01, 0.0, strength=0.5)), atol=1e-5)
  np.testing.assert_allclose(out[1.5], direct(noise.with_noise_map(
      images, 0.0, 0.01, 0.0, scale=1.5, strength=1.0)), atol=1e-5)


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_fidelity_branch_is_the_base_at_full_strength_and_alone_trains():
  """v3: the base (a v2) never sees the strength; the branch's output is
  added times (1 - s), so at full strength the model is its base; with
  freeze_base only the branch gets gradients; the Denoiser runs the base
  alone at full strength and both below."""
  from xdn.inference import denoiser as inference  # pylint: disable=g-import-not-at-top
  base_config = make_config('unet', correlation_map=True, **FIELDS)
  base = make_state(base_config, size=32)
  config = make_config('unet', correlation_map=True, strength_map=True,
                       fidelity_branch_width=4, freeze_base=True, **FIELDS)
  init = warm_start.Init('v2', ml_collections.ConfigDict(
      base_config.model.to_dict()), {'params': base.params})
  merged = warm_start.with_model(config, init)
  assert merged.model.fidelity_branch_width == 4 and merged.model.freeze_base
  state = warm_start.apply(make_state(merged, size=32), init)
  assert set(state.params) == set(base.params) | {'fidelity'}
  x = jnp.asarray(batch_of(2, 32))
  maps = lambda s: noise.with_noise_map(x, 0.0, 0.01, 0.3, strength=s)
  run = lambda p, s: state.apply_fn({'params': p}, maps(s))
  want = base.apply_fn({'params': base.params}, maps(1.0)[..., :3])
  np.testing.assert_allclose(run(state.params, 1.0), want, atol=1e-6)
  # The branch's head starts at zero: below full too, at first.
  np.testing.assert_allclose(run(state.params, 0.5), want, atol=1e-6)
  grads = jax.grad(lambda p: jnp.mean((run(p, 0.5) - x)**2))(state.params)
  assert all(float(jnp.abs(g).max()) == 0 for k, sub in grads.items()
             if k != 'fidelity' for g in jax.tree.leaves(sub))
  assert float(jnp.abs(grads['fidelity']['head']['kernel']).max()) > 0
  # A branch that adds something: the Denoiser's strengths.
  params = jax.tree.map(lambda v: v, dict(state.params))
  params['fidelity'] = dict(params['fidelity'])
  params['fidelity']['head'] = {'kernel': -0.3 * jnp.sign(
      grads['fidelity']['head']['kernel'])}
  told = [inference.NoiseEstimate('gaussian', 0.0, 0.01, 0.3, 0.3)]
  denoiser = inference.Denoiser(merged, {'params': params}, 0, 'v3',
                                strength='full', ensemble_max_pixels=0)
  images = np.asarray(x)
  np.testing.assert_allclose(denoiser(images, told * 2),
                             np.clip(np.asarray(want), 0, 1), atol=1e-5)
  half = denoiser.at_strength(0.5)(images, told * 2)
  expected = np.clip(np.asarray(run(params, 0.5)), 0, 1)
  np.testing.assert_allclose(half, expected, atol=1e-5)
  assert np.abs(half - np.clip(np.asarray(want), 0, 1)).max() > 1e-3
