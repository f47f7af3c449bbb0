"""The x8 self-ensemble: a denoiser as the mean over the 8 flips and
transpositions of its input (DnCNN's and DRUNet's "x8").

+0.15-0.25 dB on 64x64 thumbnails at 8x the compute, which small images
can afford: `applies` is the rule of which images get it, `x8` the wrapper.
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp

# Images of at most this many pixels get the ensemble (`Denoiser`'s
# `ensemble_max_pixels`, xdn-denoise --ensemble_max_pixels).
MAX_PIXELS = 256 * 256


def dihedral(images: jax.Array, k: int) -> jax.Array:
  """The k-th (0-7) of the 8 flips / transpositions of [B, H, W, C] images."""
  if k & 4:
    images = jnp.swapaxes(images, 1, 2)
  if k & 1:
    images = images[:, ::-1]
  if k & 2:
    images = images[:, :, ::-1]
  return images


def undo_dihedral(images: jax.Array, k: int) -> jax.Array:
  """The inverse of `dihedral(images, k)`."""
  if k & 2:
    images = images[:, :, ::-1]
  if k & 1:
    images = images[:, ::-1]
  if k & 4:
    images = jnp.swapaxes(images, 1, 2)
  return images


def applies(fixed_size: Optional[int], height: int, width: int,
            max_pixels: int) -> bool:
  """Whether images of [height, width] get the ensemble: up to
  `max_pixels` (0: never), and never for a fixed-size seed model, which
  was never meant to see its images flipped and gains nothing from it."""
  return fixed_size is None and height * width <= max_pixels


def x8(denoise: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """`denoise(variables, images, params, at_full)` as the mean of its
  outputs, clipped to [0, 1], over the 8 dihedral transforms of [B, H, W,
  C] `images`. Transposing swaps the axes' noise correlations; the model
  is told their mean, which a transpose keeps."""

  def ensembled(variables, images, params, at_full):
    outs = [undo_dihedral(denoise(variables, dihedral(images, k), params,
                                  at_full), k) for k in range(8)]
    return jnp.mean(jnp.clip(jnp.stack(outs), 0.0, 1.0), axis=0)

  return ensembled
