"""Image quality metrics (jit-able), on images in [0, 1] shaped [B, H, W, C].

Thin wrappers over dm-pix, so every part of xdn measures the same way.
"""

import dm_pix
import jax
import jax.numpy as jnp

Array = jax.Array


def psnr(a: Array, b: Array) -> Array:
  """Peak signal-to-noise ratio in dB for a data range of 1, per image [B]."""
  # dm-pix's psnr is inf for identical images; so is the definition.
  return dm_pix.psnr(a.astype(jnp.float32), b.astype(jnp.float32))


def ssim(a: Array, b: Array) -> Array:
  """Structural similarity (Gaussian window 11, sigma 1.5), per image [B]."""
  return dm_pix.ssim(a.astype(jnp.float32), b.astype(jnp.float32),
                     max_val=1.0)
