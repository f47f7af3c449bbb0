"""Self-supervised training end to end: noisy data only, pmap, fine-tuning."""

import os

import flax
from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from xdn.configs import self_supervised as ss_config
from xdn.data import folder
from xdn.data import noisy_copy
from xdn.data import pipeline
from xdn.io import radiographs as radiograph_io
from xdn import models
from xdn import pretrained
from xdn.runtime import batching
from xdn.training import train
from xdn.training import warm_start
from xdn.workdir import checkpoints
from xdn.workdir import state as state_lib

SIZE = 32


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
  """(clean folder, its noisy-only copy): 24 smooth 32x32 radiographs."""
  root = tmp_path_factory.mktemp('ss')
  clean = root / 'clean'
  clean.mkdir()
  rng = np.random.default_rng(0)
  for i in range(24):
    # NIH-style names: 12 patients with two studies each.
    blocks = rng.integers(40, 216, (SIZE // 8, SIZE // 8))
    pixels = np.kron(blocks, np.ones((8, 8))).astype(np.uint8)
    Image.fromarray(pixels).save(clean / f'{i // 2:08d}_{i % 2:03d}.png')
  noisy = root / 'noisy'
  noisy_copy.make_copy(str(clean), str(noisy), 'gaussian:25', seed=0)
  return str(clean), str(noisy)


def tiny_unet(**fields):
  # XLA's convolutions compile faster than xdn's CPU ones: tests stay short.
  return models.model_config('unet', **{'depth': 1, 'base_width': 4,
                                        'conv_impl': 'xla', **fields})


def make_config(noisy_dir, loss='noise2self'):
  config = ss_config.get_config()
  config.model = tiny_unet()
  config.data.manual_dir = noisy_dir
  config.data.image_size = SIZE
  config.data.split_fractions = '0.5,0.25,0.25'
  config.data.flip = config.data.rot90 = False  # Batches as stored.
  config.loss.name = loss
  config.batch_size = 4
  config.optimizer.warmup_steps = 0
  config.optimizer.schedule = 'constant'
  config.optimizer.learning_rate = 3e-3
  return config


def stored(directory):
  return {name: radiograph_io.read_radiograph(
      os.path.join(directory, name)).pixels for name in sorted(
          folder.list_files(directory))}


def new_state(config):
  model = models.create_model(config, bn_axis_name=train.AXIS)
  return state_lib.create_train_state(config, model, jax.random.key(0),
                                      (SIZE, SIZE, 1))


def test_the_step_sees_the_stored_noisy_images_only(folders, monkeypatch):
  clean_dir, noisy_dir = folders
  config = make_config(noisy_dir)
  read = []
  original_read = folder._read  # pylint: disable=protected-access
  monkeypatch.setattr(folder, '_read', lambda d, r: read.append(
      os.path.join(d, r)) or original_read(d, r))
  batches = pipeline.train_batches(config.data, global_batch_size=4,
                                   num_devices=1, seed=0)
  batch = next(batches)
  batches.close()
  assert read and all(p.startswith(noisy_dir) for p in read)
  noisy, clean = stored(noisy_dir), stored(clean_dir)
  for image in batch[0, ..., 0]:
    assert any(np.abs(image - x).max() < 1e-4 for x in noisy.values())
    assert all(np.abs(image - x).max() > 0.05 for x in clean.values())

  # What the model is given: the batch, but for the masked pixels.
  inputs = []
  state = new_state(config)
  apply_fn = state.apply_fn

  def recording_apply(variables, x, **kwargs):
    jax.debug.callback(lambda v: inputs.append(np.asarray(v)), x)
    return apply_fn(variables, x, **kwargs)

  state = state.replace(apply_fn=recording_apply)
  p_step = train.compile_train_step(config, devices=jax.devices()[:1])
  _, metrics = p_step(jax_utils.replicate(state, jax.devices()[:1]),
                      jnp.asarray(batch), jax.random.key(0))
  assert 'psnr' not in metrics  # No clean image to measure against.
  seen = inputs[0].reshape(batch.shape)
  same = np.isclose(seen, batch).mean()
  assert 1 - config.loss.mask_density <= same < 1


def first_batch(config):
  batches = pipeline.train_batches(config.data, global_batch_size=4,
                                   num_devices=1, seed=0)
  batch = next(batches)[0]
  batches.close()
  return batch


def run_steps(config, state, batch, devices, steps):
  """Parameters after 2 steps (on the host), and the losses of all steps."""
  p_step = train.compile_train_step(config, devices=devices)
  replicated = jax_utils.replicate(state, devices)
  data = batch.reshape((len(devices), -1) + batch.shape[1:])
  losses, after_two = [], None
  for step in range(steps):
    replicated, metrics = p_step(replicated, data, jax.random.key(1))
    losses.append(float(metrics['loss'][0]))
    if step == 1:  # A copy: the step donates the state's buffers.
      after_two = jax.device_get(batching.unreplicate(replicated.params))
  return after_two, losses


def test_neighbor2neighbor_on_four_devices_equals_one_and_learns(folders):
  assert jax.local_device_count() >= 4, 'tests/conftest.py sets 4 devices'
  config = make_config(folders[1], 'neighbor2neighbor')
  config.optimizer.name = 'sgd'  # Linear in the gradient: see train_test.
  config.optimizer.learning_rate = 0.05
  batch = first_batch(config)
  state = new_state(config)
  one, _ = run_steps(config, state, batch, jax.devices()[:1], 2)
  four, losses = run_steps(config, state, batch, jax.devices()[:4], 15)
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < losses[0]


def write_workdir(config, workdir, state):
  """A training workdir holding `state` at step 3, as run.py leaves one."""
  os.makedirs(workdir)
  checkpoints.write_config(workdir, config)
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save(3, jax.device_get(flax.serialization.to_state_dict(state)))
  ckpt.close()


def test_fine_tune_from_a_workdir_then_resume(folders, tmp_path):
  source = make_config(folders[1])
  state = new_state(source)
  start = jax.tree.map(lambda x: x + 0.01, state.params)
  write_workdir(source, str(tmp_path / 'source'), state.replace(params=start))

  # The model section comes from the weights, and so do they.
  tune = make_config(folders[1], 'noise2self')
  tune.model = tiny_unet(depth=2, base_width=8)
  tune.init = str(tmp_path / 'source')
  tune.num_train_steps = 1
  tune.eval_every_steps = tune.checkpoint_every_steps = 1
  tune.optimizer.learning_rate = 1e-3
  tuned = train.train_and_evaluate(tune, str(tmp_path / 'tuned'))
  saved = checkpoints.read_config(str(tmp_path / 'tuned'))
  assert (saved.model.depth, saved.model.base_width) == (1, 4)
  moved = [np.abs(a - b).max() for a, b in zip(
      jax.tree.leaves(start), jax.tree.leaves(tuned.params))]
  assert 0 < max(moved) < 0.01  # One small step away from the init.
  ckpt = checkpoints.Checkpointer(str(tmp_path / 'tuned'))
  assert ckpt.latest_step('best') == 1  # Chosen by the held-out loss.
  ckpt.close()

  # Resuming: the run's own checkpoint wins over config.init.
  again = train.train_and_evaluate(tune, str(tmp_path / 'tuned'))
  for a, b in zip(jax.tree.leaves(tuned.params),
                  jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(a, b)


def test_pretrained_init_takes_the_shipped_model(monkeypatch):
  shipped = ss_config.get_config()
  shipped.model = tiny_unet(noise_map=True, norm='none', use_bias=False)
  state = new_state(shipped)
  variables = {'params': jax.tree.map(lambda x: x + 1.0, state.params)}
  monkeypatch.setattr(pretrained, 'load',
                      lambda: (shipped, variables, 16000))
  init = warm_start.load('pretrained')
  run = ss_config.get_config()
  run.lock()  # As run.py passes it.
  run = warm_start.with_model(run, init)
  # All but how the run computes (its conv_impl, dtype), which it keeps.
  assert run.model.to_dict() == {**shipped.model.to_dict(),
                                 'conv_impl': 'auto'}
  started = warm_start.apply(state, init)
  for a, b in zip(jax.tree.leaves(started.params),
                  jax.tree.leaves(variables['params'])):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='do not fit'):
    warm_start.apply(state.replace(params={'conv': jnp.zeros(3)}), init)


def test_init_that_is_no_source_is_refused_in_one_line(tmp_path):
  with pytest.raises(ValueError, match='neither'):
    warm_start.load(str(tmp_path / 'missing'))
  assert warm_start.load('') is None
