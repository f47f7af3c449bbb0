"""Convolution layers shared by every model, fast on XLA:CPU.

`Conv` and `ConvTranspose` are drop-in replacements for `flax.linen.Conv` and
`flax.linen.ConvTranspose`: same fields, same parameters (names, shapes,
initialisers), same outputs and gradients up to float rounding. Only the way
the convolution is computed differs.

Why: XLA:CPU runs a convolution fast only in its canonical form (NHWC input,
HWIO kernel, no dilation); anything else falls back to a slow generic loop.
Under autodiff a strided convolution's kernel gradient, and a transposed
convolution (an input-dilated convolution) forward and backward, are all
non-canonical: one seed-autoencoder ConvTranspose spent 4 s of a 4.5 s train
step in its kernel gradient. So every 2-D convolution here is rewritten as a
stride-1, undilated, VALID convolution (`conv2d_valid`), whose forward and
both gradients are canonical convolutions:

* a stride-s convolution is space-to-depth by s followed by a stride-1
  convolution with a ceil(k/s) kernel;
* a stride-s transposed convolution is a stride-1 convolution producing s*s
  phases of the output followed by depth-to-space (sub-pixel convolution).

Anything else (1-D/3-D, dilation, feature groups, transpose_kernel) is
passed to the `jax.lax` convolution unchanged.
"""

from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = Union[str, Sequence[tuple[int, int]]]

_NHWC = ('NHWC', 'HWIO', 'NHWC')


# ----------------------------------------------------------------- core op


def conv2d_valid(x: jax.Array, w: jax.Array) -> jax.Array:
  """Stride-1 VALID convolution: x [B, H, W, C], w [kh, kw, C, F].

  Its autodiff gradients are canonical convolutions too (the input
  gradient a padded correlation with the flipped kernel, the kernel
  gradient a batch-contracting one that XLA lays out for its fast path).
  """
  return lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                  dimension_numbers=_NHWC)


# ------------------------------------------------------- layout helpers


def _pad_or_crop(x: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
  """Pads (positive) or crops (negative) the two spatial axes of NHWC x."""
  config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def space_to_depth(x: jax.Array, sh: int, sw: int) -> jax.Array:
  """[B, H*sh, W*sw, C] -> [B, H, W, sh*sw*C], channels ordered (sh, sw, C)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // sh, w // sw, sh * sw * c)


def depth_to_space(x: jax.Array, sh: int, sw: int) -> jax.Array:
  """[B, H, W, sh*sw*C] (channels ordered (sh, sw, C)) -> [B, H*sh, W*sw, C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, sh, sw, c // (sh * sw)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * sh, w * sw, c // (sh * sw))


# ------------------------------------------------- strided convolution


def _conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int],
            padding: Padding) -> jax.Array:
  """lax.conv_general_dilated for NHWC/HWIO, no dilation, via conv2d_valid."""
  (kh, kw), (sh, sw) = w.shape[:2], strides
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
  out = [(n + lo + hi - k) // s + 1
         for n, (lo, hi), k, s in zip(x.shape[1:3], padding, (kh, kw),
                                      strides)]
  if min(out) < 1:  # An empty output: nothing to speed up.
    return lax.conv_general_dilated(x, w, strides, padding,
                                    dimension_numbers=_NHWC)
  # Tap k = s*a + b reads input row s*(o + a) + b: after space-to-depth by s
  # that is row o + a, channel block b, so the kernel becomes ceil(k/s) taps
  # over s*s*C channels (taps past k are zero).
  ah, aw = -(-kh // sh), -(-kw // sw)
  # Pad (or crop) to exactly the rows the output reads: s * (out + a - 1).
  x = _pad_or_crop(x, [
      (lo, s * (o + a - 1) - n - lo)
      for n, (lo, _), o, a, s in zip(x.shape[1:3], padding, out, (ah, aw),
                                     (sh, sw))
  ])
  if (sh, sw) == (1, 1):
    return conv2d_valid(x, w)
  c, f = w.shape[2:]
  w = jnp.pad(w, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  w = w.reshape(ah, sh, aw, sw, c, f).transpose(0, 2, 1, 3, 4, 5)
  w = w.reshape(ah, aw, sh * sw * c, f)
  return conv2d_valid(space_to_depth(x, sh, sw), w)



def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, fast for 2-D NHWC convolutions.

  flax's `Conv` calls it with NHWC inputs and HWIO kernels; other cases
  (dilation, groups, other layouts or ranks) go to lax unchanged.
  """
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  plain = (lhs.ndim == 4 and dn == lax.conv_dimension_numbers(
      lhs.shape, rhs.shape, _NHWC) and
           all(d == 1 for d in (lhs_dilation or (1, 1))) and
           all(d == 1 for d in (rhs_dilation or (1, 1))) and
           feature_group_count == 1 and batch_group_count == 1 and
           preferred_element_type is None and lhs.dtype == rhs.dtype)
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, batch_group_count, precision,
        preferred_element_type)
  return _conv2d(lhs, rhs, tuple(window_strides), padding)


# --------------------------------------- transposed convolution


def _subpixel_taps(k: int, s: int, pad_lo: int) -> tuple[int, np.ndarray]:
  """Kernel taps of a stride-s transposed convolution, phase by phase.

  Output row s*q + r is sum_d x[q + d] * w[s*d + pad_lo - r]. Returns d_min
  and idx [D, s] with idx[j, r] = s*(d_min + j) + pad_lo - r, or k (a zero
  tap) where that is outside the kernel.
  """
  d_min = -((pad_lo) // s)
  d_max = (k - 1 + s - 1 - pad_lo) // s
  d = np.arange(d_min, d_max + 1)[:, None]
  idx = s * d + pad_lo - np.arange(s)[None, :]
  return d_min, np.where((idx >= 0) & (idx < k), idx, k)


def conv_transpose(x: jax.Array, w: jax.Array, strides: Sequence[int],
                   padding: Padding) -> jax.Array:
  """`lax.conv_transpose(x, w, strides, padding)`, NHWC/HWIO, as sub-pixel.

  One stride-1 convolution computes all s*s output phases at once (each
  phase's taps of the kernel, zero-padded to a common window) and
  depth-to-space interleaves them: no zeros are inserted into the input.
  """
  from jax._src.lax.convolution import _conv_transpose_padding  # pylint: disable=g-import-not-at-top
  (kh, kw), (sh, sw) = w.shape[:2], tuple(strides)
  if isinstance(padding, str):
    pads = [_conv_transpose_padding(k, s, padding.upper())
            for k, s in zip((kh, kw), (sh, sw))]
  else:
    pads = [tuple(p) for p in padding]  # Explicit pads apply as given.
  # Output size of the input-dilated convolution lax would run.
  out = [(n - 1) * s + 1 + lo + hi - k + 1
         for n, s, (lo, hi), k in zip(x.shape[1:3], (sh, sw), pads, (kh, kw))]
  (dh, idx_h), (dw, idx_w) = (_subpixel_taps(k, s, lo)
                              for k, s, (lo, _) in zip((kh, kw), (sh, sw),
                                                       pads))
  c, f = w.shape[2:]
  # Gather each phase's taps; index k is an appended zero tap.
  wz = jnp.pad(w, ((0, 1), (0, 0), (0, 0), (0, 0)))
  wz = jnp.take(wz, idx_h.reshape(-1), axis=0)  # [Dh*sh, kw, C, F]
  wz = jnp.pad(wz, ((0, 0), (0, 1), (0, 0), (0, 0)))
  wz = jnp.take(wz, idx_w.reshape(-1), axis=1)  # [Dh*sh, Dw*sw, C, F]
  big_h, big_w = idx_h.shape[0], idx_w.shape[0]
  wz = wz.reshape(big_h, sh, big_w, sw, c, f).transpose(0, 2, 4, 1, 3, 5)
  wz = wz.reshape(big_h, big_w, c, sh * sw * f)
  # Phase rows q = 0 .. ceil(out/s) - 1 read x[q + d_min .. q + d_max].
  qs = [-(-o // s) for o, s in zip(out, (sh, sw))]
  x = _pad_or_crop(x, [(-d0, q + big - 1 - n + d0)
                       for d0, q, big, n in zip((dh, dw), qs, (big_h, big_w),
                                                x.shape[1:3])])
  y = depth_to_space(conv2d_valid(x, wz), sh, sw)
  return y[:, :out[0], :out[1], :]


# -------------------------------------------------------------- modules


class Conv(nn.Conv):
  """`flax.linen.Conv`, computed with `conv_general_dilated` above."""
  conv_general_dilated: Any = conv_general_dilated


class ConvTranspose(nn.ConvTranspose):
  """`flax.linen.ConvTranspose` (same fields and parameters), sub-pixel."""

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    kernel_size = ((self.kernel_size,) if isinstance(self.kernel_size, int)
                   else tuple(self.kernel_size))
    broadcast = lambda v: ((1 if v is None else v,) * len(kernel_size)
                           if v is None or isinstance(v, int) else tuple(v))
    strides, dilation = broadcast(self.strides), broadcast(
        self.kernel_dilation)
    padding = nn.linear.canonicalize_padding(self.padding, len(kernel_size))
    if padding == 'CIRCULAR':
      raise NotImplementedError(
          "xdn.models.layers.ConvTranspose has no padding='CIRCULAR'; use "
          'flax.linen.ConvTranspose')
    batch_shape = inputs.shape[:inputs.ndim - len(kernel_size) - 1]
    inputs = inputs.reshape((-1,) + inputs.shape[len(batch_shape):])
    in_features = inputs.shape[-1]
    kernel_shape = kernel_size + (
        (self.features, in_features) if self.transpose_kernel else
        (in_features, self.features))
    kernel = self.param('kernel', self.kernel_init, kernel_shape,
                        self.param_dtype)
    if self.mask is not None:
      kernel *= self.mask
    bias = (self.param('bias', self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias,
                                              dtype=self.dtype)
    if (len(kernel_size) == 2 and dilation == (1, 1) and
        not self.transpose_kernel and self.preferred_element_type is None):
      y = conv_transpose(inputs, kernel, strides, padding)
    else:
      y = lax.conv_transpose(
          inputs, kernel, strides, padding, rhs_dilation=dilation,
          transpose_kernel=self.transpose_kernel, precision=self.precision,
          preferred_element_type=self.preferred_element_type)
    if bias is not None:
      y += bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y.reshape(batch_shape + y.shape[1:])
