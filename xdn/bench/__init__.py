"""Training and inference speed of the xdn models, optionally against Keras.

`python -m xdn.bench` (or `xdn-bench`) prints one JSON object; see
`benchmark()` for its fields. The timed step is `xdn.training.train`'s real pmapped
train step on one device, so the numbers are what training runs at.
"""

import importlib
import os
import platform
import resource
import time
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import jaxlib
import ml_collections
from flax import jax_utils
import numpy as np

from xdn import models
from xdn.runtime import batching
from xdn.training import train
from xdn.workdir import state as state_lib

MODELS = models.MODELS


def model_config(name: str) -> ml_collections.ConfigDict:
  """The quick CPU variant of `configs/<name>.py` (installed with xdn)."""
  # `configs` is installed beside `xdn` (setup.cfg), so this works from any
  # directory, with `pip install .` as with `-e`.
  return importlib.import_module(f'xdn.configs.{name}').get_config('quick')


def median_images_per_second(step: Callable[[], Any], batch: int,
                             repeats: int) -> float:
  """batch / median seconds of `repeats` calls of `step` (which must block).

  The one timing loop of xdn's benchmarks (models and input pipeline).
  """
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return batch / float(np.median(times))


def time_model(config: ml_collections.ConfigDict, batch: int, repeats: int,
               warmup: int) -> Dict[str, Any]:
  """Train and eval images/s of `config`'s model on [batch, S, S, 1] images."""
  size = config.data.image_size
  model = models.create_model(config, bn_axis_name=train.AXIS)
  state = state_lib.create_train_state(config, model, jax.random.key(0),
                                       (size, size, 1))
  n_params = sum(x.size for x in jax.tree.leaves(
      (state.params, state.batch_stats)))
  state = jax_utils.replicate(state, jax.local_devices()[:1])
  rng = np.random.default_rng(0)
  clean = jnp.asarray(rng.random((1, batch, size, size, 1), np.float32))
  key = jax.random.key(1)
  p_train_step = train.compile_train_step(config, jax.local_devices()[:1])

  start = time.perf_counter()
  state, metrics = p_train_step(state, clean, key)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = p_train_step(state, clean, key)
  jax.block_until_ready(metrics)

  def train_once():
    nonlocal state
    state, out = p_train_step(state, clean, key)
    jax.block_until_ready(out)

  train_rate = median_images_per_second(train_once, batch, repeats)

  eval_model = models.create_model(config)
  apply = jax.jit(lambda v, x: eval_model.apply(v, x, train=False))
  variables = batching.unreplicate({'params': state.params,
                                    'batch_stats': state.batch_stats})
  if not variables['batch_stats']:
    del variables['batch_stats']
  images = clean[0]
  for _ in range(1 + warmup):
    jax.block_until_ready(apply(variables, images))
  eval_rate = median_images_per_second(
      lambda: jax.block_until_ready(apply(variables, images)), batch, repeats)
  return {'image_size': size, 'batch_size': batch, 'parameters': n_params,
          'train_images_per_s': round(train_rate, 1),
          'eval_images_per_s': round(eval_rate, 1),
          'train_compile_s': round(compile_s, 2)}


def pipeline_images_per_second(data_config: ml_collections.ConfigDict,
                               batch: int, steps: int) -> Dict[str, Any]:
  """Input pipeline images/s, or None and the reason it could not run."""
  try:
    from xdn.data import pipeline  # pylint: disable=g-import-not-at-top
    pipeline.prepare(data_config)
    batches = pipeline.train_batches(data_config, global_batch_size=batch,
                                     num_devices=1, seed=0)
    try:
      for _ in range(max(1, steps // 10)):  # Warm-up: fill the prefetch.
        next(batches)
      rate = median_images_per_second(lambda: next(batches), batch, steps)
    finally:
      batches.close()
    return {'images_per_s': round(rate, 1), 'data': data_config.name}
  except Exception as e:  # pylint: disable=broad-except
    # The bench should still time the models without a built data set.
    return {'images_per_s': None, 'data': data_config.name,
            'reason': f'{type(e).__name__}: {e}'[:300]}


def peak_resident_mib() -> float:
  """Peak resident memory of this process so far, in MiB (Linux KiB units)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def benchmark(model_names: Sequence[str] = MODELS, *, batch_size: int = 128,
              repeats: int = 5, warmup: int = 2, pipeline_steps: int = 100,
              reference: bool = False, data_dir: Optional[str] = None
              ) -> Dict[str, Any]:
  """Times each model; with `reference`, the Keras originals too.

  Returns {'models': {name: {train_images_per_s, eval_images_per_s,
  train_compile_s, parameters, ...(keras_train_images_per_s, ratio)}},
  'pipeline': {...}, 'peak_resident_mib', 'jax', 'jaxlib', 'device_kind',
  'device_count', 'xla_flags', ...}. Rates are medians of `repeats` timed
  steps after `warmup` untimed ones; ratio = xdn / keras train images/s.
  """
  results: Dict[str, Any] = {'models': {}}
  for name in model_names:
    config = model_config(name)
    if data_dir is not None:
      config.data.data_dir = data_dir
    entry = time_model(config, batch_size, repeats, warmup)
    if reference:
      from xdn.bench import keras_reference  # pylint: disable=g-import-not-at-top
      if name in keras_reference.MODELS:
        keras_rate = keras_reference.train_images_per_second(
            name, batch_size, config.data.image_size, repeats=repeats,
            warmup=warmup, unet_depth=config.model.get('depth', 4),
            unet_base_width=config.model.get('base_width', 16))
        entry['keras_train_images_per_s'] = round(keras_rate, 1)
        entry['ratio'] = round(entry['train_images_per_s'] / keras_rate, 3)
    results['models'][name] = entry
  data_config = model_config(model_names[0] if model_names else 'autoencoder')
  if data_dir is not None:
    data_config.data.data_dir = data_dir
  results['pipeline'] = pipeline_images_per_second(
      data_config.data, batch_size, pipeline_steps)
  fastest = max((m['train_images_per_s'] for m in results['models'].values()),
                default=None)
  if fastest and results['pipeline']['images_per_s']:
    results['pipeline']['times_fastest_model'] = round(
        results['pipeline']['images_per_s'] / fastest, 1)
  results.update({
      'peak_resident_mib': peak_resident_mib(),
      'jax': jax.__version__, 'jaxlib': jaxlib.__version__,
      'backend': jax.default_backend(),
      'device_kind': jax.devices()[0].device_kind,
      'device_count': jax.device_count(),
      'cpu_count': os.cpu_count(), 'machine': platform.machine(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  })
  return results
