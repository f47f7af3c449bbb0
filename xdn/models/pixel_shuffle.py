"""Pixel-shuffle downsampling (PD): self-supervision under correlated noise.

Blind-spot and Neighbor2Neighbor losses assume that a pixel's neighbours
say nothing of its noise. Detector noise breaks that (neighbour
correlation 0.45-0.7 on real radiographs): a network trained so learns to
reproduce the noise. PD (Zhou et al. 2020; AP-BSN, Lee et al., CVPR 2022)
splits an image into stride x stride sub-images, each made of every
stride-th pixel: in a sub-image, neighbours were `stride` pixels apart, far
enough that their noise is nearly independent. The loss is trained on the
sub-images; at inference a smaller stride (AP-BSN: 5 in training, 2 at
inference) keeps more of the image's detail, and the inverse shuffle puts
the sub-images back.

Images are [B, H, W, C]; H and W are cropped (split) or padded (by
`denoise_shuffled`) to multiples of the stride.
"""

from typing import Callable

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np

from xdn.noise import physics as noise_physics

Array = jax.Array
# Neighbour correlation left in a sub-image below which the noise counts as
# independent (AP-BSN's stride 5 on sRGB noise leaves about this).
INDEPENDENT = 0.1
MAX_STRIDE = 6


def split(images: Array, stride: int) -> Array:
  """[B, H, W, C] -> [B * s^2, H // s, W // s, C]: sub-image (i, j) of image
  b holds pixels (i + s y, j + s x), at index (b * s + i) * s + j."""
  b, h, w, c = images.shape
  s = stride
  h, w = h // s * s, w // s * s
  x = images[:, :h, :w].reshape(b, h // s, s, w // s, s, c)
  return x.transpose(0, 2, 4, 1, 3, 5).reshape(b * s * s, h // s, w // s, c)


def merge(subs: Array, stride: int) -> Array:
  """The inverse of `split`: [B * s^2, h, w, C] -> [B, h s, w s, C]."""
  n, h, w, c = subs.shape
  s = stride
  x = subs.reshape(n // (s * s), s, s, h, w, c)
  return x.transpose(0, 3, 1, 4, 2, 5).reshape(n // (s * s), h * s, w * s, c)


def repeat_per_sub_image(values: Array, stride: int) -> Array:
  """Per-image values [B, ...] -> [B * s^2, ...], in `split`'s order."""
  return jnp.repeat(values, stride * stride, axis=0)


def lag_correlation(rho: float, lag: int) -> float:
  """The correlation of pixels `lag` apart along an axis in noise of
  neighbour correlation `rho`: xdn's correlated noise is white noise
  filtered by a sampled Gaussian kernel (`xdn.noise.physics`), whose
  autocorrelation gives it exactly."""
  if rho <= 0:
    return 0.0
  g = noise_physics.kernel_np(float(noise_physics.kernel_width(
      jnp.float32(rho))))
  if lag >= len(g):
    return 0.0
  return float(np.dot(g[lag:], g[:-lag]) / np.dot(g, g))


def stride_for(rho: float, threshold: float = INDEPENDENT) -> int:
  """The smallest stride whose sub-images' noise correlation is below
  `threshold` (2 for white noise: PD then still decorrelates nothing,
  but keeps training and inference at one scale)."""
  for s in range(2, MAX_STRIDE + 1):
    if lag_correlation(rho, s) < threshold:
      return s
  return MAX_STRIDE


def denoise_shuffled(fn: Callable[[Array], Array], images: Array,
                     stride: int, shifts: bool = True) -> Array:
  """fn applied to the stride-s sub-images of `images`, shuffled back.

  Each sub-image is denoised alone, so their small offsets would show as a
  stride-periodic grid (a checkerboard at stride 2); with `shifts` the
  output is the mean over the s^2 shifts of the shuffle's grid, which
  puts every pixel in every sub-image position once (s^2 times the cost).
  The images are edge-padded by a stride on each side, and the output
  cropped back to their size.
  """
  if stride <= 1:
    return fn(images)
  _, h, w, _ = images.shape
  s = stride
  padded = jnp.pad(images, ((0, 0), (s, s + -h % s), (s, s + -w % s),
                            (0, 0)), mode='edge')
  offsets = [(i, j) for i in range(s) for j in range(s)] if shifts else [
      (0, 0)]
  outs = []
  for i, j in offsets:
    window = padded[:, i:i + h + s + -h % s, j:j + w + s + -w % s]
    out = merge(fn(split(window, s)), s)
    outs.append(out[:, s - i:s - i + h, s - j:s - j + w])
  return jnp.mean(jnp.stack(outs), axis=0)


def training_stride(config: ml_collections.ConfigDict) -> int:
  """The stride a self-supervised loss trains on (`loss.pd_stride`; 0 or 1:
  no shuffle; -1, auto, must be resolved by `resolve` first)."""
  return int(config.get('loss', {}).get('pd_stride', 0))


def inference_stride(config: ml_collections.ConfigDict) -> int:
  """The stride a model trained on shuffled images is applied at (1: none):
  `loss.pd_inference_stride`, AP-BSN's smaller stride."""
  if training_stride(config) <= 1:
    return 1
  return max(int(config.loss.get('pd_inference_stride', 2)), 1)


def resolve(config: ml_collections.ConfigDict,
            estimate_correlation: Callable[[], float]
            ) -> ml_collections.ConfigDict:
  """`config` with `loss.pd_stride=-1` (auto) replaced by `stride_for` the
  noise's correlation: `noise.correlation` when the step adds correlated
  noise, else `estimate_correlation()` (of the noisy training images)."""
  if training_stride(config) != -1:
    return config
  rho = float(config.noise.get('correlation', 0.0))
  if config.noise.kind == 'none':
    rho = float(estimate_correlation())
  with config.unlocked():
    config.loss.pd_stride = stride_for(rho)
  return config
