"""A residual U-Net denoiser (U-Net / RED-Net style), fully convolutional.

Each of `depth` levels has two 3x3 convolutions with normalisation and ReLU,
then halves the resolution (strided convolution or max-pooling); the decoder
doubles it back (transposed convolution or resize + convolution) and
concatenates the encoder features of the same size. The network predicts the
noise and returns `input - noise` (residual learning, as DnCNN and RED-Net:
the noise is a simpler function to learn than the clean image).

Any H, W works: the input is reflect-padded to a multiple of 2**depth and
the output cropped back. With `valid=(h, w)` the network takes an input
larger than the image (a size bucket, `xdn.inference.size_buckets`: one compiled
program for many image sizes) and computes exactly what it computes on the
image alone: every feature map is zeroed outside the image's region at its
resolution before each convolution reads it, which is what the zero
'SAME' padding of a network run on the image alone reads there.

Two options move it towards DRUNet (Zhang et al., TPAMI 2021), the network
the shipped model uses:
  * `noise_map=True`: the input's last channel is a map of the noise's
    standard deviation per pixel (see `xdn.noise.synthetic.noise_std_map`), so one
    model serves every noise level and kind it was trained on; the output
    has one channel less.
  * `correlation_map=True` (with `noise_map`): a further channel tells the
    noise's spatial correlation, so one model serves white and correlated
    (detector) noise; see `xdn.noise.physics`.
  * `strength_map=True` (with `noise_map` and `correlation_map`): a last
    channel, (1 - s) times the std map, tells the denoising strength s
    (`xdn.inference.strength`; 0 at full strength), so one model is trained for
    every trade of noise against detail without mistaking a lower
    strength for a lower noise (`xdn.losses.fidelity`).
  * `use_bias=False` with `norm='none'`: a bias-free network (Mohan et al.,
    ICLR 2020), positively homogeneous, which generalises beyond the noise
    levels seen in training.
"""

import dataclasses
import functools
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from xdn import errors
from xdn.models import layers


def _norm(kind: str, features: int, train: bool, dtype: Any, name: str,
          axis_name: Optional[str]):
  if kind == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                        dtype=dtype, axis_name=axis_name, name=name)
  if kind == 'group':
    # 8 groups where the width allows (fewer for very narrow test models).
    return nn.GroupNorm(num_groups=math.gcd(8, features), dtype=dtype,
                        name=name)
  if kind == 'none':
    return lambda x: x
  raise errors.UserError(f"unknown model.norm {kind!r}; use 'batch', 'group' or "
                         "'none'")


def pad_mode(h: int, w: int, pad_h: int, pad_w: int) -> str:
  """The padding mode of an [h, w] input padded by (pad_h, pad_w): reflect,
  or 'edge' where reflection needs more pixels than the image has."""
  return 'reflect' if pad_h < h and pad_w < w else 'edge'


@dataclasses.dataclass(frozen=True)
class Region:
  """Where an image lies in the top-left corner of a larger input.

  `valid`: int [rows, cols] of the image at full resolution (multiples of
  2**depth). `margin`: None, or static (rows, cols) that the input extends
  at most beyond it (a size bucket's, `xdn.inference.size_buckets.margin`): then only
  strips that wide along the bottom and right are masked, not whole maps,
  which costs a fraction of the memory traffic.
  """
  valid: jax.Array
  margin: Optional[Tuple[int, int]] = None

  def zero_outside(self, x: jax.Array, level: int) -> jax.Array:
    """[B, H, W, C] features at resolution `level`, zero outside."""
    _, h, w, _ = x.shape
    rows, cols = (self.valid[i] // 2**level for i in range(2))
    if self.margin is None:
      inside = ((jnp.arange(h)[:, None] < rows) &
                (jnp.arange(w)[None, :] < cols))
      return x * inside.astype(x.dtype)[None, :, :, None]
    for axis, (size, limit, margin) in enumerate(
        zip((h, w), (rows, cols), self.margin), start=1):
      width = min(-(-margin // 2**level), size)
      if width:
        start = size - width
        keep = jnp.arange(start, size) < limit
        shape = [1, 1, 1, 1]
        shape[axis] = width
        strip = jax.lax.slice_in_dim(x, start, size, axis=axis)
        x = jax.lax.dynamic_update_slice_in_dim(
            x, strip * keep.astype(x.dtype).reshape(shape), start, axis)
    return x


def _masked(x: jax.Array, region: Optional[Region], level: int) -> jax.Array:
  return x if region is None else region.zero_outside(x, level)


class ConvBlock(nn.Module):
  """Two 3x3 convolutions, each followed by normalisation and ReLU (and,
  given a `region`, zeroed outside it: see `UNet`'s `valid`)."""
  features: int
  norm: str = 'batch'
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  use_bias: bool = True  # Only without normalisation, which has its own.
  conv_impl: str = 'auto'  # See layers.use_fast.

  @nn.compact
  def __call__(self, x, *, train: bool, region: Optional[Region] = None,
               level: int = 0):
    for i in range(2):
      x = layers.make_conv(
          self.conv_impl, self.features, (3, 3), padding='SAME',
          use_bias=self.norm == 'none' and self.use_bias, dtype=self.dtype,
          name=f'conv{i + 1}')(x)
      norm = _norm(self.norm, self.features, train, self.dtype,
                   f'norm{i + 1}', self.bn_axis_name)
      x = _masked(nn.relu(norm(x)), region, level)
    return x


class UNet(nn.Module):
  """Noisy [B, H, W, C] -> denoised [B, H, W, C], for any H and W."""
  depth: int = 4
  base_width: int = 32
  norm: str = 'batch'
  down: str = 'conv'  # 'conv' (3x3 stride 2) or 'pool' (2x2 max-pool)
  up: str = 'transpose'  # 'transpose' (2x2 stride 2) or 'resize' (+ 3x3 conv)
  residual: bool = True
  use_bias: bool = True
  noise_map: bool = False  # The input's last channel is the noise std map.
  # With noise_map: one more input channel, the noise's neighbour
  # correlation times the std map (`xdn.noise.synthetic.with_noise_map`).
  correlation_map: bool = False
  # With both maps: one more, (1 - strength) times the std map.
  strength_map: bool = False
  # With strength_map: the U-Net above (the base) never sees the strength
  # map; a second U-Net of this width (the 'fidelity' branch) sees every
  # input, and its output times (1 - strength) is added to the base's.
  # At full strength the model is its base exactly. 0: no branch (the
  # strength map goes into the one network).
  fidelity_branch_width: int = 0
  # Train the branch only: the base's output is a constant of the loss.
  freeze_base: bool = False
  zero_head: bool = False  # The head starts at zero (a branch that adds 0).
  conv_impl: str = 'auto'  # See layers.use_fast.
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None  # See autoencoder.Encoder.

  @nn.compact
  def __call__(self, x, *, train: bool = False,
               valid: Optional[jax.Array] = None,
               margin: Optional[Tuple[int, int]] = None):
    """`valid`: None, or int [rows, cols] of the image inside a larger
    input `x`, already padded as this network pads (`pad_mode`) to
    multiples of 2**depth, in its top-left corner; the output then has
    x's size and equals the network's output on the image alone there
    (up to float rounding). `margin`: static bound on x's size beyond
    `valid` (see `Region`). Needs norm 'batch' or 'none' and
    up='transpose' (`supports_valid`)."""
    if self.down not in ('conv', 'pool'):
      raise errors.UserError(f"unknown model.down {self.down!r}; use 'conv' "
                             "or 'pool'")
    if self.up not in ('transpose', 'resize'):
      raise errors.UserError(f"unknown model.up {self.up!r}; use "
                             "'transpose' or 'resize'")
    branch = (self.noise_map and self.strength_map and
              self.fidelity_branch_width > 0)
    full_input = x
    if branch:
      x = x[..., :-1]  # The base is told the noise, never the strength.
    b, h, w, c = x.shape
    out_channels = c - (self.noise_map + (self.noise_map and
                                          self.correlation_map)
                        + (self.noise_map and self.strength_map
                           and not branch))
    if out_channels < 1:
      raise errors.UserError('a noise_map U-Net needs an image channel and a '
                             f'map channel; got {c} channel(s)')
    multiple = 2**self.depth
    pad_h, pad_w = -h % multiple, -w % multiple
    if valid is not None and not self.supports_valid:
      raise errors.UserError(
          "a valid region needs model.norm 'batch' or 'none' and "
          "model.up 'transpose'")
    if valid is not None and train:
      raise ValueError('valid is for inference: BatchNorm would count the '
                       'masked pixels in its batch statistics')
    if valid is not None and (pad_h or pad_w):
      raise ValueError(f'with valid, the input ({h}x{w}) must be padded to '
                       f'a multiple of {multiple}')
    inputs = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                     mode=pad_mode(h, w, pad_h, pad_w))
    # Zero outside the image's region at each resolution (None: no region).
    region = None if valid is None else Region(valid, margin)
    # Outside the region, a strided or a transposed convolution reads only
    # outside it, where its input is zero: without a bias its output is
    # zero there already, as max-pooling's is. No mask after them then.
    resampled = None if not self.use_bias else region
    conv = functools.partial(layers.make_conv, self.conv_impl,
                             use_bias=self.use_bias, dtype=self.dtype)
    block = functools.partial(ConvBlock, norm=self.norm, dtype=self.dtype,
                              bn_axis_name=self.bn_axis_name,
                              use_bias=self.use_bias,
                              conv_impl=self.conv_impl)

    y = _masked(inputs.astype(self.dtype), region, 0)
    skips = []
    for level in range(self.depth):
      width = self.base_width * 2**level
      y = block(width, name=f'down{level}')(y, train=train, region=region,
                                            level=level)
      skips.append(y)
      if self.down == 'pool':
        y = nn.max_pool(y, (2, 2), strides=(2, 2))
      else:
        y = _masked(conv(width, (3, 3), strides=(2, 2), padding='SAME',
                         name=f'pool{level}')(y), resampled, level + 1)
    y = block(self.base_width * 2**self.depth, name='bottleneck')(
        y, train=train, region=region, level=self.depth)
    for level in reversed(range(self.depth)):
      width = self.base_width * 2**level
      if self.up == 'transpose':
        y = _masked(layers.make_conv_transpose(
            self.conv_impl, width, (2, 2), strides=(2, 2),
            use_bias=self.use_bias, dtype=self.dtype,
            name=f'upsample{level}')(y), resampled, level)
      else:
        n, hh, ww, ch = y.shape
        y = jax.image.resize(y, (n, 2 * hh, 2 * ww, ch), 'bilinear')
        y = conv(width, (3, 3), padding='SAME', name=f'upsample{level}')(y)
      y = jnp.concatenate([y, skips[level]], axis=-1)
      y = block(width, name=f'up{level}')(y, train=train, region=region,
                                          level=level)
    head_init = {'kernel_init': nn.initializers.zeros} if self.zero_head else {}
    out = conv(out_channels, (1, 1), name='head', **head_init)(y)
    out = out.astype(jnp.float32)
    if self.residual:
      out = inputs[..., :out_channels] - out
    out = out[:, :h, :w, :]
    if branch:
      if self.freeze_base:
        out = jax.lax.stop_gradient(out)
      correction = UNet(
          depth=self.depth, base_width=self.fidelity_branch_width,
          norm=self.norm, down=self.down, up=self.up, residual=False,
          use_bias=self.use_bias, noise_map=True, correlation_map=True,
          strength_map=True, zero_head=True, conv_impl=self.conv_impl,
          dtype=self.dtype, bn_axis_name=self.bn_axis_name,
          name='fidelity')(full_input, train=train, valid=valid,
                           margin=margin)
      # (1 - s) per pixel: the strength map over the std map (scale-free,
      # so the network stays positively homogeneous).
      std, told = full_input[..., 1:2], full_input[..., -1:]
      gate = jnp.where(std > 0, told / jnp.where(std > 0, std, 1.0), 0.0)
      out = out + gate.astype(jnp.float32) * correction
    return out

  @property
  def supports_valid(self) -> bool:
    return supports_valid(self.norm, self.up)


def supports_valid(norm: str, up: str) -> bool:
  """Whether a U-Net takes `valid`: GroupNorm's statistics and bilinear
  resizing read the whole map, which masking cannot undo."""
  return norm in ('batch', 'none') and up == 'transpose'

