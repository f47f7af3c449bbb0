"""A trained model as compiled programs, and batched calls of them.

`forward(config, dtype)` is the model as a pure function of its variables,
images and what it is told (`xdn.models.conditioning`); `Programs` holds
the jitted programs of one config, one per compute dtype and x8 ensemble
(`xdn.inference.ensemble`), and compiles ahead of a call (`precompile`);
`apply_batches` runs images through one in fixed-size batches.
"""

import threading
from typing import Any, Callable, Dict, Optional, Set, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn.inference import ensemble
from xdn.inference.told import Params
from xdn import models
from xdn.models import conditioning
from xdn.models import pixel_shuffle
from xdn.runtime import batching
from xdn.runtime import compile_cache


def forward(config: ml_collections.ConfigDict,
            dtype: str = 'float32') -> Callable:
  """The model of `config` in compute `dtype` as a pure function, not
  jitted: (variables, images [B, H, W, 1], params (`told.Params`, or None
  for a model told nothing), at_full, valid=None, margin=None) -> float32
  output, unclipped. `at_full`: every image's strength >= 1 (a fidelity
  branch is then skipped); `valid`, `margin`: the images' region [rows,
  cols] inside a size bucket and its static bound (`takes_valid` models,
  `unet.Region`). Differentiable in `variables` (what
  `xdn.inference.adaptation` fine-tunes)."""
  if dtype != config.model.get('dtype', 'float32'):
    config = config.copy_and_resolve_references()
    config.model.dtype = dtype
  model = models.create_model(config)
  capabilities = models.capabilities(config)
  told = capabilities.told
  base = base_told = None
  if told.fidelity_branch:
    base_config = conditioning.without_fidelity_branch(config)
    base, base_told = (models.create_model(base_config),
                       models.capabilities(base_config).told)

  def denoise(variables, images, params, at_full, valid=None, margin=None):
    net, net_told = model, told
    if at_full and base is not None:
      # The branch's output would be multiplied by 1 - s = 0. (Its other
      # collections, BatchNorm's statistics, stay: dropping them was a bug.)
      net, net_told = base, base_told
      variables = {**variables, 'params': {
          k: v for k, v in variables['params'].items() if k != 'fidelity'}}
    if net_told.channels:
      a, b, rho, dose, scale = params
      images = conditioning.model_input(
          images, a, b, net_told,
          correlation=rho if net_told.correlation_map else None,
          xray_dose=dose, strength=scale)
    region = {} if valid is None else {'valid': valid, 'margin': margin}
    # A model trained on pixel-shuffled sub-images is applied to them.
    out = pixel_shuffle.denoise_shuffled(
        lambda x: models.denoised_image(net.apply(variables, x, train=False,
                                                  **region)),
        images, capabilities.pixel_shuffle)
    return out.astype(jnp.float32)

  return denoise


def _jit(denoise: Callable, with_ensemble: bool) -> Callable:
  """A jitted program (variables, images, params, at_full, valid, margin)
  -> outputs clipped to [0, 1]; `at_full` and `margin` static."""
  if with_ensemble:
    ensembled = ensemble.x8(denoise)

    def apply(variables, images, params, at_full, valid, margin):
      del valid, margin  # Whole images only.
      return ensembled(variables, images, params, at_full)
  else:

    def apply(variables, images, params, at_full, valid, margin):
      return jnp.clip(denoise(variables, images, params, at_full, valid,
                              margin), 0.0, 1.0)

  return jax.jit(apply, static_argnums=(3, 5))


class Programs:
  """The jitted programs of one config, made on first use and shared by the
  denoisers built from it (other strengths, weights, batch sizes)."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self._lock = threading.Lock()  # precompile runs on its own thread.
    self._programs: Dict[Tuple[str, bool], Callable] = {}
    self._forwards: Dict[str, Callable] = {}
    self._precompiled: Set[Tuple[Any, ...]] = set()

  def get(self, dtype: str, with_ensemble: bool) -> Callable:
    """The program in compute `dtype`, with or without the x8 ensemble."""
    with self._lock:
      if dtype not in self._forwards:
        self._forwards[dtype] = forward(self.config, dtype)
      key = (dtype, with_ensemble)
      if key not in self._programs:
        self._programs[key] = _jit(self._forwards[dtype], with_ensemble)
      return self._programs[key]

  def precompile(self, signature: Tuple[Any, ...], dtype: str,
                 with_ensemble: bool, variables: Any,
                 shape: Tuple[int, int], at_full: bool,
                 margin: Optional[Tuple[int, int]]) -> bool:
    """Compiles, once per `signature`, the program of one [1, H, W, 1]
    image of `shape` (in its bucket when `margin` is given), so that its
    call finds it in JAX's persistent cache. Never raises (the call
    would compile as usual); returns whether it compiled."""
    with self._lock:
      if signature in self._precompiled:
        return False
      self._precompiled.add(signature)
    f32 = lambda s: jax.ShapeDtypeStruct(s, jnp.float32)
    valid = None if margin is None else jax.ShapeDtypeStruct((2,), jnp.int32)
    try:
      self.get(dtype, with_ensemble).lower(
          variables, f32((1,) + tuple(shape) + (1,)),
          tuple(f32((1,)) for _ in range(5)), at_full, valid,
          margin).compile()
    except Exception as e:  # pylint: disable=broad-except  # Only a hint.
      logging.debug('precompile of %dx%d failed: %s', shape[0], shape[1], e)
      return False
    return True


def precompile_wanted() -> bool:
  """Whether compiling ahead helps: only into JAX's persistent cache."""
  return compile_cache.active() is not None


def apply_batches(program: Callable, variables: Any, images: np.ndarray,
                  params: Params, batch_size: int, at_full: bool,
                  valid: Optional[np.ndarray] = None,
                  margin: Optional[Tuple[int, int]] = None) -> np.ndarray:
  """`program` on [B, H, W, 1] `images`, `batch_size` at a time: every
  batch padded to one size, so that one compiled shape serves them all."""
  outputs = []
  size = batch_size if len(images) > batch_size else len(images)
  for start in range(0, len(images), batch_size):
    stop = start + batch_size
    batch, n = batching.pad_batch(images[start:stop], size)
    batch_params = tuple(batching.pad_batch(p[start:stop], size)[0]
                         for p in params)
    outputs.append(np.asarray(program(variables, batch, batch_params,
                                      at_full, valid, margin))[:n])
  return np.concatenate(outputs) if outputs else images.copy()
