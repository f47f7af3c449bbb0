"""Trained models ready to apply: `load_denoiser(workdir)`.

Used by `xdn.evaluate` and `xdn-denoise`; works on any number of images and,
for the fully convolutional U-Net, any image size.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn import checkpoints
from xdn import models
from xdn import train


@dataclasses.dataclass
class Denoiser:
  """Applies a model to [B, H, W, 1] float32 images in [0, 1]."""
  config: ml_collections.ConfigDict
  variables: Any
  step: int
  fixed_size: Optional[int]  # Square size a seed model needs; None: any.
  name: str
  batch_size: int = 32  # Images per compiled call (bounds memory).
  _apply: Callable = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    model = models.create_model(self.config)

    @jax.jit
    def apply(variables, images):
      out = model.apply(variables, images, train=False)
      return jnp.clip(models.denoised_image(out), 0.0, 1.0)

    self._apply = apply

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1:
      raise ValueError(f'expected images shaped [B, H, W, 1], got '
                       f'{images.shape}')
    if self.fixed_size and images.shape[1:3] != (self.fixed_size,) * 2:
      raise ValueError(
          f'model {self.name!r} takes {self.fixed_size}x{self.fixed_size} '
          f'images, got {images.shape[1]}x{images.shape[2]}; tile the image '
          '(xdn-denoise does) or use a U-Net')
    outputs = []
    for start in range(0, len(images), self.batch_size):
      batch = images[start:start + self.batch_size]
      n = len(batch)
      if n < self.batch_size and len(images) > self.batch_size:
        # Pad the last batch so one compiled shape serves every batch.
        batch = np.concatenate(
            [batch, np.zeros((self.batch_size - n,) + batch.shape[1:],
                             np.float32)])
      outputs.append(np.asarray(self._apply(self.variables, batch))[:n])
    return np.concatenate(outputs) if outputs else images.copy()


def _initial_state(config: ml_collections.ConfigDict, seed: int = 0, *,
                   abstract: bool = False) -> train.TrainState:
  """A fresh training state (or only its shapes, if `abstract`)."""
  model = models.create_model(config)
  size = models.fixed_input_size(config) or config.data.image_size
  create = functools.partial(train.create_train_state, config, model,
                             jax.random.key(seed), (size, size, 1))
  return jax.eval_shape(create) if abstract else create()


def init_denoiser(config: ml_collections.ConfigDict,
                  seed: int = 0) -> Denoiser:
  """A denoiser with freshly initialised (untrained) weights."""
  models.check_config(config)
  state = _initial_state(config, seed)
  return Denoiser(config, {'params': state.params,
                           'batch_stats': state.batch_stats}, step=0,
                  fixed_size=models.fixed_input_size(config),
                  name=config.model.name)


def load_denoiser(workdir: str, which: str = 'best') -> Denoiser:
  """The model trained in `workdir`: its best checkpoint (or latest)."""
  config = checkpoints.read_config(workdir)
  target = flax.serialization.to_state_dict(
      _initial_state(config, abstract=True))
  ckpt = checkpoints.Checkpointer(workdir)
  try:
    if which == 'best' and ckpt.latest_step('best') is None:
      which = 'latest'
    restored = ckpt.restore(target, which)
  finally:
    ckpt.close()
  return Denoiser(config, {'params': restored['params'],
                           'batch_stats': restored['batch_stats']},
                  step=int(restored['step']),
                  fixed_size=models.fixed_input_size(config),
                  name=config.model.name)
