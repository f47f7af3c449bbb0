"""Convolution layers shared by every model, fast on XLA:CPU.

`Conv` and `ConvTranspose` are drop-in replacements for `flax.linen.Conv` and
`flax.linen.ConvTranspose`: same fields, same parameters (names, shapes,
initialisers), same outputs and gradients up to float rounding. Only the way
the convolutions are computed differs.

Why: a 2-D convolution has three computations in training (forward, input
gradient, kernel gradient) and XLA:CPU runs each fast only in some of the
forms it can be written in. Measured on the models' layers (`xdn.bench`,
tests/layers_test.py checks the equality):

* an input-dilated convolution (a transposed convolution's forward, and a
  strided convolution's input gradient) falls back to a slow generic loop:
  it is computed as a stride-1 convolution producing the s*s output phases
  at once, interleaved by depth-to-space (sub-pixel convolution);
* the input gradient of a transposed convolution is a strided convolution,
  which XLA runs fast as it is;
* a kernel gradient is a convolution over the batch that XLA lays out with
  costly transposes; of the two convolutions it can be read off (the
  forward's, or the input gradient's "adjoint" one with the roles of input
  and output gradient swapped) the faster one is used.

Anything else (1-D/3-D, kernel dilation, feature groups, transpose_kernel)
is passed to `jax.lax` unchanged. The custom gradient supports reverse mode
(grad, vjp, and grad of grad); forward mode (jvp) is not defined for it.
"""

import functools
from typing import Any, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = Union[str, Sequence[tuple[int, int]]]
Pads = tuple[tuple[int, int], tuple[int, int]]

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _lax_conv(x: jax.Array, w: jax.Array, strides: tuple[int, int],
              pads: Pads, lhs_dilation: tuple[int, int]) -> jax.Array:
  return lax.conv_general_dilated(x, w, strides, pads, lhs_dilation,
                                  dimension_numbers=_NHWC)


# ------------------------------------------------------- layout helpers


def _pad_or_crop(x: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
  """Pads (positive) or crops (negative) the two spatial axes of NHWC x."""
  config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def depth_to_space(x: jax.Array, sh: int, sw: int) -> jax.Array:
  """[B, H, W, sh*sw*C] (channels ordered (sh, sw, C)) -> [B, H*sh, W*sw, C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, sh, sw, c // (sh * sw)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * sh, w * sw, c // (sh * sw))


# ------------------------------------ input-dilated (sub-pixel) convolution


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


def _dilated_conv(x: jax.Array, w: jax.Array, dilation: tuple[int, int],
                  pads: Pads) -> jax.Array:
  """`_lax_conv(x, w, (1, 1), pads, dilation)` as a sub-pixel convolution.

  One stride-1 convolution computes all s*s output phases at once (each
  phase's taps of the kernel, zero-padded to a common window) and
  depth-to-space interleaves them: no zeros are inserted into the input.
  """
  (kh, kw), (sh, sw) = w.shape[:2], dilation
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
  y = _lax_conv(x, wz, (1, 1), ((0, 0), (0, 0)), (1, 1))
  y = depth_to_space(y, sh, sw)
  return y[:, :out[0], :out[1], :]


# ----------------------------------------------------------- core op


def _forward(x, w, strides, pads, dilation):
  if dilation == (1, 1):
    return _lax_conv(x, w, strides, pads, dilation)
  return _dilated_conv(x, w, dilation, pads)


def _dilated_size(size: int, dilation: int) -> int:
  return 0 if size == 0 else 1 + dilation * (size - 1)


def _input_grad_padding(in_shape, kernel_shape, strides, out_shape, pads,
                        dilation) -> list[tuple[int, int]]:
  """Pads of the convolution that computes an input gradient.

  The same arithmetic as lax's transpose rule for `conv_general_dilated`
  (written out here: lax keeps it private).
  """
  result = []
  for n, k, s, o, (lo, _), d in zip(in_shape, kernel_shape, strides,
                                     out_shape, pads, dilation):
    before = k - lo - 1
    after = _dilated_size(n, d) + k - 1 - _dilated_size(o, s) - before
    result.append((before, after))
  return result


def _conv_transpose_padding(k: int, s: int, padding: str) -> tuple[int, int]:
  """lax.conv_transpose's explicit pads for 'SAME' / 'VALID' (as lax)."""
  if padding == 'SAME':
    total = k + s - 2
    before = k - 1 if s > k - 1 else -(-total // 2)
  elif padding == 'VALID':
    total = k + s - 2 + max(k - s, 0)
    before = k - 1
  else:
    raise ValueError(f'padding must be SAME or VALID, got {padding!r}')
  return before, total - before


def _lax_input_grad(dy, w, x_shape, strides, pads, dilation):
  """d(loss)/dx as lax's own transpose of the convolution computes it."""
  x = jax.ShapeDtypeStruct(x_shape, dy.dtype)
  return jax.linear_transpose(
      lambda x: _lax_conv(x, w, strides, pads, dilation), x)(dy)[0]


def _input_grad(dy, w, x_shape, strides, pads, dilation):
  """d(loss)/dx, as lax's transpose rule, but with a fast dilated conv."""
  if strides == (1, 1) and dilation != (1, 1):
    # The transpose of an input-dilated convolution is a strided one,
    # which XLA runs fast as it is.
    return _lax_input_grad(dy, w, x_shape, strides, pads, dilation)
  t_pads = _input_grad_padding(x_shape[1:3], w.shape[:2], strides,
                               dy.shape[1:3], pads, dilation)
  w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  return _forward(dy, w_t, dilation, tuple(map(tuple, t_pads)), strides)


def _kernel_grad(x, dy, w_shape, strides, pads, dilation):
  """d(loss)/dw, read off whichever convolution XLA runs faster."""
  w = jax.ShapeDtypeStruct(w_shape, x.dtype)
  adjoint = dilation != (1, 1) or (strides == (1, 1) and
                                   w_shape[3] <= w_shape[2])
  if adjoint:
    # <dy, conv(x, w)> = <x, conv^T(dy, w)>: w's gradient is that of the
    # input-gradient convolution, with x as its output gradient.
    return jax.linear_transpose(
        lambda w: _lax_input_grad(dy, w, x.shape, strides, pads, dilation),
        w)(x)[0]
  return jax.linear_transpose(
      lambda w: _lax_conv(x, w, strides, pads, dilation), w)(dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x: jax.Array, w: jax.Array, strides: tuple[int, int],
           pads: Pads, dilation: tuple[int, int] = (1, 1)) -> jax.Array:
  """`lax.conv_general_dilated(x, w, strides, pads, dilation)`, NHWC/HWIO.

  Strides and input dilation may not both exceed 1 (no flax layer makes
  such a convolution).
  """
  return _forward(x, w, strides, pads, dilation)


def _conv2d_fwd(x, w, strides, pads, dilation):
  return _forward(x, w, strides, pads, dilation), (x, w)


def _conv2d_bwd(strides, pads, dilation, residuals, dy):
  x, w = residuals
  return (_input_grad(dy, w, x.shape, strides, pads, dilation),
          _kernel_grad(x, dy, w.shape, strides, pads, dilation))


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, fast for 2-D NHWC convolutions.

  flax's `Conv` calls it with NHWC inputs and HWIO kernels; other cases
  (kernel dilation, groups, other layouts or ranks) go to lax unchanged.
  """
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  strides = tuple(window_strides)
  dilation = tuple(lhs_dilation or (1, 1))
  plain = (lhs.ndim == 4 and dn == lax.conv_dimension_numbers(
      lhs.shape, rhs.shape, _NHWC) and
           all(d == 1 for d in (rhs_dilation or (1, 1))) and
           (strides == (1, 1) or dilation == (1, 1)) and
           feature_group_count == 1 and batch_group_count == 1 and
           preferred_element_type is None and lhs.dtype == rhs.dtype)
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, batch_group_count, precision,
        preferred_element_type)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides,
                                  padding)
  return conv2d(lhs, rhs, strides, tuple(map(tuple, padding)), dilation)


def conv_transpose(x: jax.Array, w: jax.Array, strides: Sequence[int],
                   padding: Padding) -> jax.Array:
  """`lax.conv_transpose(x, w, strides, padding)` for NHWC/HWIO, fast."""
  strides = tuple(strides)
  if isinstance(padding, str):
    pads = tuple(_conv_transpose_padding(k, s, padding.upper())
                 for k, s in zip(w.shape[:2], strides))
  else:
    pads = tuple(tuple(p) for p in padding)  # Explicit pads apply as given.
  return conv2d(x, w, (1, 1), pads, strides)


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


# ---------------------------------------------------------- choosing


IMPLS = ('auto', 'fast', 'xla')


def use_fast(impl: str) -> bool:
  """Whether `impl` ('auto', 'fast' or 'xla') means the layers above.

  'auto' picks them on CPU only: they were measured there (see the module
  docstring); on GPU and TPU, XLA's own convolutions are the tuned path.
  """
  if impl not in IMPLS:
    raise ValueError(f'unknown model.conv_impl {impl!r}; use one of {IMPLS}')
  return impl == 'fast' or (impl == 'auto' and jax.default_backend() == 'cpu')


def make_conv(impl: str, *args, **kwargs) -> nn.Module:
  """A `Conv` (fast) or `flax.linen.Conv`, by `impl`; same parameters."""
  return (Conv if use_fast(impl) else nn.Conv)(*args, **kwargs)


def make_conv_transpose(impl: str, *args, **kwargs) -> nn.Module:
  """A `ConvTranspose` (fast) or `flax.linen.ConvTranspose`, by `impl`."""
  return (ConvTranspose if use_fast(impl) else nn.ConvTranspose)(
      *args, **kwargs)
