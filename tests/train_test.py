"""The compiled train step: it learns, it is pure, and pmap changes nothing."""

import flax
from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.configs import default
from xdn import models
from xdn.runtime import batching
from xdn.training import train
from xdn.workdir import state as state_lib


def make_config(name='autoencoder', **model_fields):
  config = default.get_config()
  config.model = default.model_config(name, **model_fields)
  config.noise.kind = 'gaussian'
  config.noise.level = 25.0
  return config


def make_state(config, size=64):
  model = models.create_model(config, bn_axis_name=train.AXIS)
  return state_lib.create_train_state(config, model, jax.random.key(0),
                                      (size, size, 1))


def batch_of(n, size=64, seed=0):
  rng = np.random.default_rng(seed)
  # Smooth random images, so there is structure to learn.
  x = rng.random((n, size // 8, size // 8, 1)).astype(np.float32)
  return np.kron(x, np.ones((1, 8, 8, 1), np.float32))


def run_steps(config, state, batch, steps, devices):
  p_step = train.compile_train_step(config, devices=devices)
  state = jax_utils.replicate(state, devices)
  batch = batch.reshape((len(devices), -1) + batch.shape[1:])
  history = []
  for _ in range(steps):
    state, metrics = p_step(state, batch, jax.random.key(42))
    history.append(float(metrics['loss'][0]))
  return batching.unreplicate(state), history


@pytest.mark.parametrize('name,fields', [
    ('autoencoder', {}), ('vae', {}), ('unet', dict(depth=2, base_width=8)),
])
def test_steps_change_parameters_and_lower_the_loss(name, fields):
  config = make_config(name, **fields)
  config.optimizer.learning_rate = 1e-3
  state = make_state(config)
  batch = batch_of(8)
  new_state, history = run_steps(config, state, batch, 12, jax.devices()[:1])
  assert int(new_state.step) == 12
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.params,
                         new_state.params)
  assert all(jax.tree.leaves(changed))
  assert np.all(np.isfinite(history))
  assert np.mean(history[-3:]) < history[0]


@pytest.mark.parametrize('name,fields', [
    ('autoencoder', {}), ('unet', dict(depth=2, base_width=8)),
])
def test_pmap_over_four_devices_equals_one_device(name, fields):
  assert jax.local_device_count() >= 4, 'tests/conftest.py sets 4 devices'
  config = make_config(name, **fields)
  # SGD is linear in the gradient; Adam's first steps (lr * g / |g|) would
  # amplify float round-off in tiny gradients.
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.05
  state = make_state(config)
  batch = batch_of(8)
  one, _ = run_steps(config, state, batch, 2, jax.devices()[:1])
  four, _ = run_steps(config, state, batch, 2, jax.devices()[:4])
  for a, b in zip(jax.tree.leaves((one.params, one.batch_stats)),
                  jax.tree.leaves((four.params, four.batch_stats))):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_step_is_a_pure_function_of_state_and_key():
  config = make_config()
  state = make_state(config)
  batch = batch_of(4)
  a, _ = run_steps(config, state, batch, 2, jax.devices()[:1])
  b, _ = run_steps(config, state, batch, 2, jax.devices()[:1])
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize('skip', [False, True])
def test_nonfinite_batch_is_never_applied(skip):
  config = make_config()
  config.skip_nonfinite = skip
  state = make_state(config)
  bad = batch_of(4)
  bad[0, 3, 3, 0] = np.nan
  new_state, _ = run_steps(config, state, bad, 1, jax.devices()[:1])
  for a, b in zip(jax.tree.leaves(state.params),
                  jax.tree.leaves(new_state.params)):
    np.testing.assert_array_equal(a, b)
  assert int(new_state.first_nonfinite_step) == 0
  assert int(new_state.nonfinite_steps) == 1
  assert int(new_state.step) == 1


def test_noise_is_fresh_every_step_and_independent_of_devices():
  config = make_config()
  clean = jnp.asarray(batch_of(4))
  noisy = lambda key: jax.pmap(
      lambda c: train.corrupt_batch(train.example_keys(key, 4), c,
                                    config.noise, train=True)[0],
      axis_name=train.AXIS, devices=jax.devices()[:1])(clean[None])[0]
  a, b = noisy(jax.random.key(1)), noisy(jax.random.key(2))
  assert np.abs(a - b).max() > 0.01
  # Four devices with one image each see the same noise as one with four.
  four = jax.pmap(
      lambda c: train.corrupt_batch(train.example_keys(jax.random.key(1), 1),
                                    c, config.noise, train=True)[0],
      axis_name=train.AXIS, devices=jax.devices()[:4])(clean[:, None])
  np.testing.assert_array_equal(np.asarray(four)[:, 0], a)


@pytest.mark.parametrize('field,value,match', [
    ('batch_size', 6, 'multiple'),
    ('num_train_steps', 0, 'num_train_steps'),
])
def test_bad_config_values_are_rejected(field, value, match):
  config = make_config()
  config[field] = value
  with pytest.raises(ValueError, match=match):
    train.check_config(config, num_devices=4)


def test_bad_optimizer_names_are_rejected():
  config = make_config()
  config.optimizer.name = 'adagrad_typo'
  with pytest.raises(ValueError, match='optimizer.name'):
    state_lib.create_optimizer(config)
