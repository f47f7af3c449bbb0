"""The training state of a run and how a fresh one is made.

Its own module so that restoring a model (`xdn.inference.denoiser`, `xdn.cli.evaluate`)
needs neither the training loop nor the data pipeline (TensorFlow).
"""

import functools
from typing import Any, Tuple

from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import optax

from xdn import errors
from xdn.models import noise_channels  # pylint: disable=unused-import  # Re-exported.


class TrainState(train_state.TrainState):
  """Parameters, optimizer state and BatchNorm statistics of a run."""
  batch_stats: Any = None
  # Steps whose loss or gradient was NaN/Inf; their updates were skipped.
  nonfinite_steps: jax.Array = None
  first_nonfinite_step: jax.Array = None  # -1 while every step was finite.


def create_optimizer(config: ml_collections.ConfigDict
                    ) -> optax.GradientTransformation:
  """The optax optimizer and learning-rate schedule of `config.optimizer`."""
  oc = config.optimizer
  if oc.schedule == 'constant':
    lr = optax.constant_schedule(oc.learning_rate)
  elif oc.schedule == 'cosine':
    lr = optax.cosine_decay_schedule(
        oc.learning_rate, max(config.num_train_steps - oc.warmup_steps, 1))
  else:
    raise errors.UserError(f"unknown optimizer.schedule {oc.schedule!r}; use "
                           "'constant' or 'cosine'")
  if oc.warmup_steps > 0:
    lr = optax.join_schedules(
        [optax.linear_schedule(0.0, oc.learning_rate, oc.warmup_steps), lr],
        [oc.warmup_steps])
  if oc.name == 'adam':
    tx = optax.adam(lr)
  elif oc.name == 'adamw':
    tx = optax.adamw(lr, weight_decay=oc.weight_decay)
  elif oc.name == 'sgd':
    tx = optax.sgd(lr, momentum=0.9)
  else:
    raise errors.UserError(f"unknown optimizer.name {oc.name!r}; use 'adam', "
                           "'adamw' or 'sgd'")
  if oc.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(oc.grad_clip_norm), tx)
  return tx


def create_train_state(config: ml_collections.ConfigDict, model, key: jax.Array,
                       image_shape: Tuple[int, int, int]) -> TrainState:
  """Initialises parameters for images of `image_shape` (H, W, C).

  A model with a noise map (`model.noise_map`) gets one channel more, and
  one more again with a correlation map (`model.correlation_map`), and
  with a strength map (`model.strength_map`).
  """
  h, w, c = image_shape
  c += noise_channels(config)
  dummy = jnp.zeros((1, h, w, c), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(
      {'params': key, 'latent': key}, dummy)
  return TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=create_optimizer(config),
      nonfinite_steps=jnp.zeros((), jnp.int32),
      first_nonfinite_step=jnp.full((), -1, jnp.int32))
