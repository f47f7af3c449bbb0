"""Training: the pmap-compiled train and eval steps, and the loop.

`train_and_evaluate(config, workdir)` is what `run.py` calls. One code path
serves one device and many: the steps are always `jax.pmap`-compiled over
the local devices (a single CPU is a pmap of one), gradients and BatchNorm
statistics are averaged over the 'batch' axis, and the noise of every
example is drawn from a key derived from (seed, step, example index in the
global batch), so training does not depend on how many devices share it.
"""

import functools
import os
import signal
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import flax
from flax import jax_utils
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import optax
from PIL import Image

from xdn.data import pipeline
from xdn import errors
from xdn.losses import fidelity as fidelity_loss
from xdn.losses import self_supervised
from xdn.losses import supervised as losses
from xdn.metrics import lesions
from xdn.metrics import similarity as metrics_lib
from xdn import models
from xdn.models import conditioning
from xdn.models import pixel_shuffle
from xdn.noise import synthetic as noise
from xdn.noise import texture as noise_texture
from xdn.runtime import batching
from xdn.runtime import stop as stop_lib
from xdn.training import visualize
from xdn.training import warm_start
from xdn.workdir import checkpoints
from xdn.workdir import state as state_lib
from xdn.workdir.state import TrainState

AXIS = 'batch'


# --------------------------------------------------------------- set-up


def _train_correlation(config: ml_collections.ConfigDict,
                       batches: int = 4) -> float:
  """The noise correlation of a few training batches (native crops, as the
  loss sees them), for `loss.pd_stride=-1`."""
  stream = pipeline.train_batches(config.data,
                                  global_batch_size=config.batch_size,
                                  num_devices=1, seed=config.seed)
  size = config.data.image_size
  crops = [np.asarray(next(stream)).reshape(-1, size, size)
           for _ in range(batches)]
  return noise_texture.estimate_correlation(list(np.concatenate(crops)))


def check_config(config: ml_collections.ConfigDict,
                 num_devices: int = 1) -> None:
  """Raises a one-line error for any bad config value before work starts."""
  models.check_config(config)
  noise.check_config(config.noise)
  if 'lesions' in config:
    lesions.check_config(config.lesions)
  fidelity_loss.check_config(config)
  self_supervised.check_config(config)
  if config.batch_size <= 0 or config.batch_size % num_devices:
    raise errors.UserError(
        f'batch_size={config.batch_size} must be a positive multiple of the '
        f'{num_devices} devices; set --config.batch_size accordingly')
  for field in ('num_train_steps', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps', 'keep_checkpoints'):
    if config[field] <= 0:
      raise errors.UserError(f'{field} must be > 0, got {config[field]}')
  if config.optimizer.learning_rate <= 0:
    raise errors.UserError('optimizer.learning_rate must be > 0')
  state_lib.create_optimizer(config)  # Unknown optimizer or schedule names.


def example_keys(key: jax.Array, local_batch: int) -> jax.Array:
  """One key per example, from its index in the global batch (in pmap)."""
  first = jax.lax.axis_index(AXIS) * local_batch
  return jax.vmap(jax.random.fold_in, (None, 0))(
      key, first + jnp.arange(local_batch))


def corrupt_batch(keys: jax.Array, clean: jax.Array,
                  noise_config: ml_collections.ConfigDict, *,
                  train: bool) -> Tuple[jax.Array, ...]:
  """Corrupts each image with its own key (and, if blind, its own level).

  Returns the noisy images and each one's variance parameters (a, b),
  neighbour correlation and X-ray dose, see `noise.corrupt_with_params`.
  """
  def one(k, x):
    out = noise.corrupt_with_params(k, x[None], noise_config, train=train)
    return tuple(v[0] for v in out)
  return jax.vmap(one)(keys, clean)


def model_input(noisy: jax.Array, a: jax.Array, b: jax.Array,
                config: ml_collections.ConfigDict,
                correlation: Optional[jax.Array] = None,
                xray_dose: Optional[jax.Array] = None,
                strength: Optional[jax.Array] = None) -> jax.Array:
  """What the model sees: the noisy images, plus the noise maps it takes,
  told `strength` (None: full) by the one rule of `xdn.models.conditioning`,
  which inference follows too."""
  return conditioning.model_input(
      noisy, a, b, models.capabilities(config).told, correlation=correlation,
      xray_dose=xray_dose, strength=strength)


# ---------------------------------------------------------------- steps


def train_step(state: TrainState, clean: jax.Array, key: jax.Array, *,
               config: ml_collections.ConfigDict
               ) -> Tuple[TrainState, Dict[str, jax.Array]]:
  """One optimisation step on a device's share [b, H, W, C] of the batch.

  Runs under `jax.pmap(axis_name='batch')`. `key` is the run's training key;
  the step's randomness is derived from it and `state.step`, so the step is a
  pure function of its inputs and a resumed run repeats it exactly.
  """
  step_key = jax.random.fold_in(key, state.step)
  noise_key, latent_key = jax.random.split(step_key)
  if config.get('lesions') and config.lesions.rate > 0:
    # The target keeps the lesion: the model learns not to erase it.
    clean = lesions.insert_random_lesions(
        jax.random.fold_in(noise_key, 2 + jax.lax.axis_index(AXIS)), clean,
        config.lesions)
  twins = None
  if fidelity_loss.enabled(config):
    # Lesion twins share their base's noise draw exactly: the noisy twin is
    # the noisy base plus the lesion (see xdn.losses.fidelity).
    half = clean.shape[0] // 2
    noisy, a, b, rho, dose = corrupt_batch(
        example_keys(noise_key, half), clean[:half], config.noise, train=True)
    variance = noise.noise_std_map(noisy, a, b, dose)**2
    twins = fidelity_loss.lesion_twins(
        jax.random.fold_in(noise_key, 3 + jax.lax.axis_index(AXIS)), clean,
        jnp.sqrt(jnp.mean(variance, (1, 2, 3))), config.fidelity)
    clean = twins.targets
    noisy = jnp.concatenate([noisy, jnp.clip(noisy + twins.lesion, 0, 1)])
    a, b, rho, dose = (jnp.concatenate([v, v]) for v in (a, b, rho, dose))
  else:
    noisy, a, b, rho, dose = corrupt_batch(
        example_keys(noise_key, clean.shape[0]), clean, config.noise,
        train=True)
  unsupervised = self_supervised.is_self_supervised(config.loss)
  image_channel = noisy
  # Materialise the noisy batch once: XLA:CPU would otherwise fuse the noise
  # generator into the first convolution and redraw it for every window.
  # (Self-supervised losses build their model inputs themselves.)
  noisy = jax.lax.optimization_barrier(
      noisy if unsupervised else model_input(
          noisy, a, b, config, rho, dose,
          None if twins is None else twins.strength))
  latent_key = jax.random.fold_in(latent_key, jax.lax.axis_index(AXIS))

  def loss_fn(params):
    apply = functools.partial(
        state.apply_fn, {'params': params, 'batch_stats': state.batch_stats},
        train=True, rngs={'latent': latent_key}, mutable=['batch_stats'])
    if unsupervised:
      # `clean` never reaches the loss: the noisy images are the targets.
      loss, extras, denoised, updates = self_supervised.loss_and_output(
          apply, noisy, example_keys(jax.random.fold_in(noise_key, 1),
                                     clean.shape[0]), config, a=a, b=b,
          progress=state.step / config.num_train_steps)
      return loss, (extras, updates, denoised)
    out, updates = apply(noisy)
    if twins is not None:
      loss, extras = fidelity_loss.twin_loss(out, twins, image_channel,
                                             variance, config.fidelity)
    else:
      loss, extras = losses.compute_loss(config.loss, out, clean)
    return loss, (extras, updates, models.denoised_image(out))

  (loss, (extras, updates, denoised)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  batch_stats = jax.lax.pmean(updates.get('batch_stats', {}), AXIS)
  grad_norm = optax.global_norm(grads)
  loss = jax.lax.pmean(loss, AXIS)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  # A non-finite step leaves the state as it was (but for the step count and
  # the record of the fault), so the last good parameters are never lost.
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                           new_state, state.replace(step=new_state.step))
  new_state = new_state.replace(
      nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
      first_nonfinite_step=jnp.where(
          (state.first_nonfinite_step < 0) & ~finite, state.step,
          state.first_nonfinite_step))
  step_metrics = {'loss': loss, 'grad_norm': grad_norm}
  if self_supervised.has_clean_target(config):  # Else `clean` is noisy.
    step_metrics['psnr'] = jnp.mean(metrics_lib.psnr(
        jnp.clip(denoised, 0, 1), clean))
  step_metrics.update(extras)
  return new_state, jax.lax.pmean(step_metrics, AXIS)


def eval_step(state: TrainState, clean: jax.Array, index: jax.Array,
              key: jax.Array, *, config: ml_collections.ConfigDict
              ) -> Dict[str, jax.Array]:
  """Per-image metrics of denoising `clean` [b, H, W, C] corrupted afresh.

  Image i's noise comes from fold_in(key, index[i]): every eval sees the
  same noisy images, so eval numbers are comparable across steps and runs.
  """
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, index)
  noisy, a, b, rho, dose = corrupt_batch(keys, clean, config.noise,
                                         train=False)
  apply = functools.partial(state.apply_fn, {
      'params': state.params, 'batch_stats': state.batch_stats}, train=False)
  # A model trained on pixel-shuffled images is applied as it is used.
  out = pixel_shuffle.denoise_shuffled(
      apply, model_input(noisy, a, b, config, rho, dose),
      pixel_shuffle.inference_stride(config))
  if self_supervised.is_self_supervised(config.loss):
    loss, *_ = self_supervised.loss_and_output(
        lambda x: (apply(x), {}), noisy,
        jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(key, 1),
                                                index),
        config, a=a, b=b, per_image=True)
  else:
    loss, _ = jax.vmap(
        lambda o, c: losses.compute_loss(config.loss, o, c[None]))(
            jax.tree.map(lambda x: x[:, None], out), clean)
  denoised = jnp.clip(models.denoised_image(out), 0.0, 1.0)
  metrics = {'loss': loss, 'noisy': noisy, 'denoised': denoised}
  if self_supervised.has_clean_target(config):  # Else `clean` is noisy.
    metrics.update({
        'mse': jnp.mean((denoised - clean)**2, (1, 2, 3)),
        'psnr': metrics_lib.psnr(denoised, clean),
        'ssim': metrics_lib.ssim(denoised, clean),
        'noisy_psnr': metrics_lib.psnr(noisy, clean),
        'noisy_ssim': metrics_lib.ssim(noisy, clean)})
  return metrics


def compile_train_step(config: ml_collections.ConfigDict,
                       devices: Optional[Sequence[jax.Device]] = None
                       ) -> Callable:
  """`train_step` pmapped over `devices` (default: all local devices).

  Call as (replicated state, batch [D, b, H, W, C], training key).
  """
  return jax.pmap(functools.partial(train_step, config=config),
                  axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,),
                  devices=devices)


def compile_eval_step(config: ml_collections.ConfigDict) -> Callable:
  return jax.pmap(functools.partial(eval_step, config=config),
                  axis_name=AXIS, in_axes=(0, 0, 0, None))


# ----------------------------------------------------------- evaluation


def eval_metrics(p_eval_step: Callable, state: TrainState, images: np.ndarray,
                 key: jax.Array, batch_size: int
                 ) -> Tuple[Dict[str, float], np.ndarray, np.ndarray]:
  """Mean eval metrics over `images`, and the (noisy, denoised) images."""
  devices = jax.local_device_count()
  per_device = max(batch_size // devices, 1)
  chunk = per_device * devices
  sums: Dict[str, float] = {}
  noisy, denoised = [], []
  for start in range(0, len(images), chunk):
    batch, n = batching.pad_batch(images[start:start + chunk], chunk)
    index = np.arange(start, start + chunk, dtype=np.int32)
    out = p_eval_step(state, batch.reshape((devices, per_device) +
                                           batch.shape[1:]),
                      index.reshape(devices, per_device), key)
    out = jax.tree.map(lambda x: batching.local_rows(x).reshape(
        (chunk,) + x.shape[2:])[:n], out)
    noisy.append(out.pop('noisy'))
    denoised.append(out.pop('denoised'))
    for name, values in out.items():
      sums[name] = sums.get(name, 0.0) + float(np.sum(values))
  means = {name: total / len(images) for name, total in sums.items()}
  return means, np.concatenate(noisy), np.concatenate(denoised)


# ------------------------------------------------------------------ loop


class _StopRequest(stop_lib.StopRequest):
  """SIGTERM / SIGINT become a request the loop honours at a step's end.

  In a multi-host run the signal may reach one process only (a scheduler
  preempting one host, a `kill` of one pid), yet all must stop at the same
  step: checkpoints are written collectively. So the processes agree with one
  small all-gather of their requests every `sync_every` steps, where the loop
  already waits for its metrics (about 4 ms on CPU, too much for every step).
  """

  def __init__(self, sync_every: int = 1):
    self._sync_every = max(sync_every, 1)
    super().__init__(
        (signal.SIGTERM, signal.SIGINT),
        'saving a checkpoint, then stopping' +
        (f' (with every process, within {self._sync_every} steps)'
         if jax.process_count() > 1 else ''))

  def should_stop(self, step: int) -> bool:
    """Whether to stop after `step`; the same answer on every process."""
    if jax.process_count() == 1:
      return self.signal is not None
    if step % self._sync_every:
      return False
    requests = multihost_utils.process_allgather(np.int32(self.signal or 0))
    if not requests.any():
      return False
    first = int(np.flatnonzero(requests)[0])
    logging.warning('Process %d received %s: every process saves a checkpoint '
                    'at step %d, then stops.', first,
                    signal.Signals(int(requests[first])).name, step)
    return True


def _check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    # Named per process: processes of a multi-host run share the workdir.
    probe = os.path.join(
        workdir, f'.write_test.{jax.process_index()}.{os.getpid()}')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise errors.UserError(
        f'cannot write to workdir {workdir!r} ({e.strerror}); choose a '
        'workdir you can write to') from None


def _host_state(state: TrainState) -> Dict[str, Any]:
  """One replica of the state as a dict of numpy arrays, for orbax."""
  return jax.device_get(flax.serialization.to_state_dict(
      batching.unreplicate(state)))


def _raise_if_nonfinite(state: TrainState, config, checkpointer) -> int:
  """Stops the run on a NaN/Inf step unless config.skip_nonfinite is set."""
  first = int(batching.unreplicate(state.first_nonfinite_step))
  count = int(batching.unreplicate(state.nonfinite_steps))
  if first >= 0 and not config.skip_nonfinite:
    checkpointer.wait()  # Let a save in flight (of a good state) finish.
    good = checkpointer.latest_step()
    # `first` is the state's step count before the update: the faulty step
    # is the next one, numbered as in the logs and checkpoints.
    raise errors.UserError(
        f'non-finite loss or gradient at step {first + 1}; its update was not '
        f'applied and the last good checkpoint (step {good}) is kept. Lower '
        '--config.optimizer.learning_rate, check the data, or set '
        '--config.skip_nonfinite=True to skip such steps')
  return count


def _save_samples(workdir: str, step: int, clean, noisy, denoised) -> None:
  os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
  grid = visualize.image_grid([noisy, denoised, clean])
  visualize.save_png(os.path.join(workdir, 'samples',
                                  f'denoise_{step:07d}.png'), grid)


def _save_generated(workdir: str, step: int, images: np.ndarray) -> None:
  folder = os.path.join(workdir, 'samples')
  os.makedirs(folder, exist_ok=True)
  columns = int(np.ceil(np.sqrt(len(images))))
  visualize.save_png(os.path.join(folder, f'generated_{step:07d}.png'),
                     visualize.tile(images, columns))


def _save_generated_gif(workdir: str) -> None:
  folder = os.path.join(workdir, 'samples')
  names = sorted(n for n in os.listdir(folder) if n.startswith('generated_')
                 and n.endswith('.png'))
  if names:
    frames = [np.asarray(Image.open(os.path.join(folder, n))) for n in names]
    visualize.save_gif(os.path.join(folder, 'generated.gif'), frames)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint."""
  devices = jax.local_device_count()
  init = warm_start.load(config.get('init', ''))
  if init is not None:  # The weights decide the model's shape.
    config = warm_start.with_model(config, init)
  check_config(config, devices * jax.process_count())
  is_chief = jax.process_index() == 0
  _check_workdir(workdir)
  pipeline.prepare(config.data)
  eval_images = pipeline.eval_images(config.data, config.data.eval_split)
  config = pixel_shuffle.resolve(config, lambda: _train_correlation(config))
  checkpoints.check_compatible(workdir, config)
  if is_chief:
    checkpoints.write_config(workdir, config)

  writer = metric_writers.create_default_writer(
      workdir, just_logging=not is_chief)
  logging.info('Eval on %d images of %s[%s]', len(eval_images),
               config.data.name, config.data.eval_split)

  model = models.create_model(config, bn_axis_name=AXIS)
  init_key, train_key, eval_key, gen_key = jax.random.split(
      jax.random.key(config.seed), 4)
  image_shape = (config.data.image_size, config.data.image_size, 1)
  state = state_lib.create_train_state(config, model, init_key, image_shape)
  if init is not None:  # Before resuming: a checkpoint of this run wins.
    state = warm_start.apply(state, init)
  checkpointer = checkpoints.Checkpointer(workdir, config.keep_checkpoints,
                                         cleanup_tmp=True)
  if checkpointer.latest_step() is not None:
    restored = checkpointer.restore(
        flax.serialization.to_state_dict(state))
    state = flax.serialization.from_state_dict(state, restored)
    logging.info('Resumed from %s at step %d', checkpointer.workdir,
                 int(state.step))
  initial_step = int(state.step)
  # clu's writers take a flat mapping ('model.name': ...).
  writer.write_hparams(traverse_util.flatten_dict(config.to_dict(), sep='.'))

  state = jax_utils.replicate(state)
  p_train_step = compile_train_step(config)
  p_eval_step = compile_eval_step(config)
  train_iter = jax_utils.prefetch_to_device(pipeline.train_batches(
      config.data, global_batch_size=config.batch_size, num_devices=devices,
      seed=config.seed, start_step=initial_step,
      process_index=jax.process_index(),
      process_count=jax.process_count()), 2)
  hooks = [periodic_actions.ReportProgress(
      num_train_steps=config.num_train_steps, writer=writer)] if is_chief else []

  def run_eval(step: int) -> Dict[str, float]:
    means, noisy, denoised = eval_metrics(p_eval_step, state, eval_images,
                                          eval_key, config.batch_size)
    writer.write_scalars(step, {f'eval_{k}': v for k, v in means.items()})
    n = config.num_sample_images
    if is_chief and n > 0:
      _save_samples(workdir, step, eval_images[:n], noisy[:n], denoised[:n])
      if config.model.name == 'vae':
        params = batching.unreplicate(state).params
        images = jax.jit(functools.partial(model.apply, method='sample'),
                         static_argnums=2)({'params': params}, gen_key,
                                           config.num_generated_images)
        _save_generated(workdir, step, np.asarray(images))
    return means

  step = initial_step
  window: list = []
  window_start = time.perf_counter()
  stopping = False
  with _StopRequest(sync_every=config.log_every_steps) as stop:
    for step in range(initial_step + 1, config.num_train_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, step_metrics = p_train_step(state, next(train_iter), train_key)
      window.append(step_metrics)
      for hook in hooks:
        hook(step)
      last = step == config.num_train_steps
      stopping = stop.should_stop(step)
      if step % config.log_every_steps == 0 or last or stopping:
        skipped = _raise_if_nonfinite(state, config, checkpointer)
        host_window = jax.device_get(batching.unreplicate(window))
        summary = {f'train_{k}': float(np.mean([m[k] for m in host_window]))
                   for k in host_window[0]}
        elapsed = time.perf_counter() - window_start
        summary['train_images_per_sec'] = (
            len(window) * config.batch_size / max(elapsed, 1e-9))
        summary['train_nonfinite_steps'] = skipped
        writer.write_scalars(step, summary)
        window, window_start = [], time.perf_counter()
      if step % config.eval_every_steps == 0 or last:
        means = run_eval(step)
        # Collective: every process calls it, process 0 writes.
        # Noisy-only data have no PSNR; their self-supervised loss on
        # held-out images tracks the error to the clean image instead.
        score = means['psnr'] if 'psnr' in means else -means['loss']
        checkpointer.save_best(step, _host_state(state), score)
      if step % config.checkpoint_every_steps == 0 or last or stopping:
        _raise_if_nonfinite(state, config, checkpointer)
        checkpointer.save(step, _host_state(state))
      if stopping:
        break
  checkpointer.wait()
  if stopping:
    logging.warning('Stopped at step %d; rerun the same command to resume.',
                    step)
  elif step == initial_step:
    logging.info('Already trained to step %d; nothing to do.', step)
  if is_chief and config.model.name == 'vae':
    _save_generated_gif(workdir)
  writer.flush()
  checkpointer.close()
  return batching.unreplicate(state)
