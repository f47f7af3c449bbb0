"""Training that keeps what a reader looks for: lesion twins and strength.

A denoiser trained on MSE alone erases faint lesions with the noise (their
contrast transfer falls to 0.6-0.8) and leaves a smooth, "waxy" residual.
This module adds two terms, both scale-free, and makes them depend on the
strength s in (0, 1] the model is told (the factor on its noise maps,
`xdn.inference.strength`), so one model serves every strength level:

  * Lesion twins. Half the batch are the other half's patches with one
    faint lesion l added (`xdn.metrics.lesions`, Gaussian or flat-topped, 1.5-8 px,
    contrast set for an input NPW d' of 1-4 at its noise), under the *same*
    noise draw. The term
        || D(x + l + n) - D(x + n) - l ||^2 / || l ||^2
    is 0 when the denoiser passes the lesion unchanged: the contrast
    transfer of `xdn.metrics.observers`, made differentiable (as in Li, Zhou,
    Li & Anastasio, IEEE TMI 2021, observer-informed losses).
  * Texture. The radial power spectrum of the error D(x + n) - x, each
    normalised to mean 1 over frequency, against the input noise's: 0 when
    the residual has the input noise's grain (NPS shape, TG-233), at any
    magnitude.

Their weights are w(s) = weight * var * ((1 - s) / (1 - min_strength))^p,
var the noise variance at the lesion: 0 at s = 1, so the model told the
true noise stays the PSNR-optimal denoiser of plain MSE training ('full'),
and the further below 1, the more fidelity it buys. Multiplying by var
makes the trade independent of the noise level (the MSE a kept noise band
costs grows with var; the terms above do not).
"""

from typing import Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn import errors
from xdn.metrics import lesions

Array = jax.Array


class Twins(NamedTuple):
  """A batch laid out as [bases, bases + lesions]."""
  targets: Array  # [2h, H, W, 1] clean images: x, then x + l.
  lesion: Array  # [h, H, W, 1] the lesions alone (unit peak times contrast).
  strength: Array  # [2h] the strength each image is told (twins share it).


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether `config.fidelity` asks for twins (and strength draws)."""
  fidelity = config.get('fidelity')
  return bool(fidelity) and (fidelity.weight > 0 or
                             fidelity.texture_weight > 0)


def check_config(config: ml_collections.ConfigDict) -> None:
  """One-line errors for a bad `config.fidelity`."""
  if not config.get('fidelity'):
    return
  f = config.fidelity
  if f.weight < 0 or f.texture_weight < 0:
    raise errors.UserError('fidelity.weight and fidelity.texture_weight must '
                           'be >= 0')
  if not 0 < f.min_strength < 1:
    raise errors.UserError(f'fidelity.min_strength must be in (0, 1), got '
                           f'{f.min_strength}')
  if not 0 <= f.full_fraction <= 1:
    raise errors.UserError('fidelity.full_fraction must be in [0, 1]')
  if not 0 < f.min_size <= f.max_size or not 0 < f.min_d_prime <= f.max_d_prime:
    raise errors.UserError('fidelity: need 0 < min_size <= max_size and '
                           '0 < min_d_prime <= max_d_prime')
  if enabled(config) and config.batch_size % 2:
    raise errors.UserError(f'fidelity training pairs images: batch_size '
                           f'({config.batch_size}) must be even')


def draw_strength(key: Array, count: int,
                  fidelity: ml_collections.ConfigDict) -> Array:
  """[count] strengths: 1 with probability full_fraction, else uniform in
  [min_strength, 1)."""
  full_key, value_key = jax.random.split(key)
  value = jax.random.uniform(value_key, (count,), jnp.float32,
                             fidelity.min_strength, 1.0)
  full = jax.random.uniform(full_key, (count,)) < fidelity.full_fraction
  return jnp.where(full, 1.0, value)


def weight_of_strength(strength: Array,
                       fidelity: ml_collections.ConfigDict) -> Array:
  """((1 - s) / (1 - min_strength))^p, clipped to [0, 1]: 0 at s = 1
  (p = `fidelity.strength_power`, 2 by default)."""
  t = (1.0 - strength) / (1.0 - fidelity.min_strength)
  return jnp.clip(t, 0.0, 1.0)**fidelity.get('strength_power', 2.0)


def lesion_twins(key: Array, clean: Array, noise_std: Array,
                 fidelity: ml_collections.ConfigDict) -> Twins:
  """Twins of the first half of `clean` [2h, H, W, 1] with one lesion each.

  `noise_std` [h]: the noise std at each base image (sets the contrast for
  an NPW d' drawn log-uniformly in [min_d_prime, max_d_prime]: for a
  Gaussian profile of std s on white noise of std sigma, d' = c sqrt(pi)
  s / sigma).
  """
  h = clean.shape[0] // 2
  base = clean[:h]
  height, width = base.shape[1:3]
  keys = jax.random.split(key, 8)
  u = lambda k, lo=0.0, hi=1.0: jax.random.uniform(k, (h,), jnp.float32, lo,
                                                    hi)
  log_u = lambda k, lo, hi: jnp.exp(u(k, np.log(lo), np.log(hi)))
  size = log_u(keys[0], fidelity.min_size, fidelity.max_size)
  d_prime = log_u(keys[1], fidelity.min_d_prime, fidelity.max_d_prime)
  # A floor of half a grey level: noise-free patches still get a lesion.
  sigma = jnp.maximum(noise_std, 0.5 / 255)
  contrast = d_prime * sigma / (np.sqrt(np.pi) * size)
  sign = jnp.where(u(keys[2]) < 0.75, 1.0, -1.0)
  aspect = jnp.where(u(keys[3]) < 0.7, 1.0, u(keys[4], 1.0, 2.5))
  angle = u(keys[5], 0.0, np.pi)
  flat = u(keys[6]) < 0.2
  # Centres at least one lesion std inside the patch.
  cy = u(jax.random.fold_in(keys[7], 0), 0.0, 1.0) * (height - 1 - 2 * size) + size
  cx = u(jax.random.fold_in(keys[7], 1), 0.0, 1.0) * (width - 1 - 2 * size) + size
  maps = jax.vmap(lambda *a: lesions.lesion_map((height, width), *a))(
      cy, cx, size, aspect, angle, flat)
  lesion = (sign * contrast)[:, None, None, None] * maps[..., None]
  strength = draw_strength(jax.random.fold_in(key, 1), h, fidelity)
  return Twins(jnp.concatenate([base, base + lesion]), lesion,
               jnp.concatenate([strength, strength]))


def lesion_noise_variance(lesion: Array, variance_map: Array) -> Array:
  """[h] the noise variance under each lesion (lesion-weighted mean)."""
  w = jnp.abs(lesion)
  return jnp.sum(w * variance_map, (1, 2, 3)) / jnp.maximum(
      jnp.sum(w, (1, 2, 3)), 1e-12)


def transfer_error(out_base: Array, out_twin: Array, lesion: Array) -> Array:
  """[h] || D(y + l) - D(y) - l ||^2 / || l ||^2 per twin."""
  diff = out_twin - out_base - lesion
  return jnp.sum(diff**2, (1, 2, 3)) / jnp.maximum(
      jnp.sum(lesion**2, (1, 2, 3)), 1e-12)


def _radial_bins(height: int, width: int, count: int) -> np.ndarray:
  """[H*W, count] one-hot radial frequency bins (DC left out)."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[None, :]
  r = np.sqrt(fy**2 + fx**2).reshape(-1)
  index = np.minimum((r / 0.5 * count).astype(int), count - 1)
  onehot = np.zeros((r.size, count), np.float32)
  onehot[np.arange(r.size), index] = 1.0
  onehot[0] = 0.0  # DC: the mean, not texture.
  return onehot / np.maximum(onehot.sum(0, keepdims=True), 1.0)


def radial_spectrum(images: Array, bins: int = 8) -> Array:
  """[B, bins] radial power spectra of [B, H, W, 1], each mean 1."""
  b, h, w, _ = images.shape
  x = images[..., 0] - jnp.mean(images[..., 0], (1, 2), keepdims=True)
  power = jnp.abs(jnp.fft.fft2(x))**2
  spectrum = power.reshape(b, h * w) @ jnp.asarray(_radial_bins(h, w, bins))
  return spectrum / jnp.maximum(jnp.mean(spectrum, -1, keepdims=True), 1e-20)


def texture_error(error: Array, input_noise: Array) -> Array:
  """[B] mean squared difference of the normalised radial spectra."""
  return jnp.mean((radial_spectrum(error) - radial_spectrum(input_noise))**2,
                  -1)


def twin_loss(out: Array, twins: Twins, noisy: Array, variance_map: Array,
              fidelity: ml_collections.ConfigDict
              ) -> Tuple[Array, Dict[str, Array]]:
  """MSE over both halves plus the strength-weighted fidelity terms.

  `out` [2h, H, W, 1] the model's outputs, `noisy` its noisy inputs (the
  image channel), `variance_map` [h, H, W, 1] the true noise variance of
  the bases (not scaled by the strength).
  """
  h = twins.lesion.shape[0]
  mse = jnp.mean((out - twins.targets)**2)
  var = lesion_noise_variance(twins.lesion, variance_map)
  w = weight_of_strength(twins.strength[:h], fidelity) * var
  transfer = transfer_error(out[:h], out[h:], twins.lesion)
  texture = texture_error(out[:h] - twins.targets[:h],
                          noisy[:h] - twins.targets[:h])
  # Per-pixel MSE is the unit: the terms are per image, weighted by var.
  loss = (mse + jnp.mean(w * (fidelity.weight * transfer +
                              fidelity.texture_weight * texture)))
  reduced = twins.strength[:h] < 1
  count = jnp.maximum(jnp.sum(reduced), 1)
  return loss, {
      'mse': mse,
      # Over the twins told a reduced strength, where the terms count.
      'twin_transfer_error': jnp.sum(jnp.where(reduced, transfer, 0)) / count,
      'twin_texture_error': jnp.sum(jnp.where(reduced, texture, 0)) / count,
  }
