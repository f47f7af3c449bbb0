"""What each strength level keeps, measured on noisy images alone.

A strength level is defined by what it keeps of faint lesions
(`xdn.inference.strength`), and calibration measures that on clean images
with inserted lesions (`xdn.evaluation.calibration`). A model fine-tuned on
a user's noisy images (`xdn.inference.adaptation`) has no clean image to be
measured on; this module compares it with the model it started from, on
those noisy images, level by level, with two figures that need none:

  * the contrast transfer of faint lesions l = c u added to the noisy
    tiles, twins under the same noise (as `xdn.metrics.observers` defines
    it): <u, f(y + l) - f(y)> / <u, l>, c the contrast at which the input's
    NPW d' is `strength.LESION_D_PRIME`;
  * NPW d' over the input's, for a denoiser linear about y (background
    known): transfer x sd<u, z> / sd<u, f(y + b z) - f(y - b z)> 2b, z
    fresh noise of the images' own covariance (the adaptation's
    recorruption), so that the denominator is the noise the output keeps
    in the lesion's band.

The start keeps each level's rule (it was calibrated); an adapted model
keeps the level when neither figure falls more than TOLERANCE below the
start's, averaged over the lesion sizes as calibration averages them.
"""

import dataclasses
from typing import Callable, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xdn.inference import compiled as compiled_lib
from xdn.inference import strength as strength_lib
from xdn.metrics import lesions as lesion_lib
from xdn.noise import synthetic as noise

# How far (as a fraction) either figure may fall below the start's.
TOLERANCE = 0.03
# The noise step of the output's noise response (times the noise).
NOISE_STEP = 0.5
# Lesion sites of a tile, as fractions of its side: one per quadrant.
SITES = ((0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))


@dataclasses.dataclass
class Probe:
  """Held-out noisy tiles [N, t, t, 1] with lesions at their SITES (tile i:
  size LESION_SIZES[i % 3]) and the fresh noise of the response."""
  images: np.ndarray
  lesions: np.ndarray  # [N, t, t, 1]: the sum of c u over the tile's sites.
  units: np.ndarray  # [N, S, t, t]: each site's unit profile u.
  contrasts: np.ndarray  # [N, S]: c.
  sizes: np.ndarray  # [N]: the tile's lesion size.
  noise: np.ndarray  # [N, t, t, 1]: z, of the images' noise covariance.
  told: Dict[str, Tuple[np.ndarray, ...]]  # Level -> params, one per tile.


def _unit(tile: int, size: float, fy: float, fx: float) -> np.ndarray:
  return lesion_lib.lesion_image((tile, tile),
                                 [(fy * tile, fx * tile)], size, 1.0)


def make_probe(images: np.ndarray, params: Tuple[np.ndarray, ...],
               told: Dict[str, Tuple[np.ndarray, ...]], kernel: np.ndarray,
               fresh_noise: np.ndarray) -> Probe:
  """A probe of noisy tiles `images` [N, t, t, 1] whose noise has
  `params` ((a, b, rho, dose, scale), one per tile) and the texture
  `kernel` (white noise filtered by it, times the std); `told`: the params
  each level tells the model; `fresh_noise`: z [N, t, t, 1], the images'
  noise drawn afresh (`adaptation.recorruption`)."""
  n, t = images.shape[0], images.shape[1]
  a, b, _, dose, _ = params
  std = np.asarray(noise.noise_std_map(jnp.asarray(images), a, b, dose))
  sizes = np.asarray([strength_lib.LESION_SIZES[i % len(
      strength_lib.LESION_SIZES)] for i in range(n)], np.float32)
  units = np.zeros((n, len(SITES), t, t), np.float32)
  contrasts = np.zeros((n, len(SITES)), np.float32)
  for size in set(sizes.tolist()):
    shapes = [_unit(t, size, fy, fx) for fy, fx in SITES]
    # sd <u, k * w> for unit white w: the norm of u correlated with k.
    spread = [np.sqrt(np.sum(np.square(_correlate(u, kernel))))
              for u in shapes]
    for i in np.flatnonzero(sizes == size):
      for s, ((fy, fx), u) in enumerate(zip(SITES, shapes)):
        units[i, s] = u
        local = std[i, int(fy * t), int(fx * t), 0]
        contrasts[i, s] = (strength_lib.LESION_D_PRIME * local * spread[s] /
                           np.sum(u * u))
  lesions = np.einsum('ns,nshw->nhw', contrasts, units)[..., None]
  return Probe(images.astype(np.float32), lesions.astype(np.float32), units,
               contrasts, sizes, fresh_noise.astype(np.float32), told)


def _correlate(u: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """u correlated with `kernel` over the whole plane (zero outside)."""
  kh, kw = kernel.shape
  shape = (u.shape[0] + kh - 1, u.shape[1] + kw - 1)
  return np.real(np.fft.ifft2(np.fft.fft2(u, shape) *
                              np.conj(np.fft.fft2(kernel, shape))))


@dataclasses.dataclass
class Figures:
  """Per level: mean contrast transfer and NPW d' over the input's, each
  averaged over the lesion sizes."""
  transfer: Dict[str, float]
  d_prime: Dict[str, float]


def compiled(forward: Callable) -> Callable:
  """`forward(variables, images, told, at_full)` (`Denoiser.forward`) as
  the program `compiled_lib.apply_batches` runs, compiled once for every
  `measure` of it."""
  return jax.jit(lambda v, x, p, at_full, valid, margin: forward(v, x, p,
                                                                 at_full),
                 static_argnums=3)


def measure(apply: Callable, variables, probe: Probe,
            batch: int = 8) -> Figures:
  """`apply` (`compiled`) on the probe at each of its levels, below full
  strength."""
  step = NOISE_STEP

  def run(images, told):
    return compiled_lib.apply_batches(apply, variables, images, told, batch,
                                      False)[..., 0]

  def response(field):  # [N, t, t] -> [N, S]: <u, field> per site.
    return np.einsum('nshw,nhw->ns', probe.units, field)

  # Each template's response to all the tile's lesions (neighbours'
  # tails included): what an identity passes.
  signal_in = response(probe.lesions[..., 0])
  noise_in = response(probe.noise[..., 0])
  transfer, d_prime = {}, {}
  for level, told in probe.told.items():
    plain = run(probe.images, told)
    with_lesions = run(probe.images + probe.lesions, told)
    plus = run(probe.images + step * probe.noise, told)
    minus = run(probe.images - step * probe.noise, told)
    kept = response(with_lesions - plain) / signal_in
    noise_out = response(plus - minus) / (2 * step)
    per_size_t, per_size_d = [], []
    for size in sorted(set(probe.sizes.tolist())):
      rows = probe.sizes == size
      t = float(np.mean(kept[rows]))
      rms_in = np.sqrt(np.mean(np.square(noise_in[rows])))
      rms_out = np.sqrt(np.mean(np.square(noise_out[rows])))
      per_size_t.append(t)
      per_size_d.append(t * rms_in / max(rms_out, 1e-12))
    transfer[level] = float(np.mean(per_size_t))
    d_prime[level] = float(np.mean(per_size_d))
  return Figures(transfer, d_prime)


def compare(start: Figures, candidate: Figures) -> Dict[str, Dict[str, float]]:
  """Per level, each figure of the candidate over the start's."""
  return {level: {'transfer': candidate.transfer[level] /
                              max(start.transfer[level], 1e-12),
                  'd_prime': candidate.d_prime[level] /
                             max(start.d_prime[level], 1e-12)}
          for level in start.transfer}


def shortfall(ratios: Dict[str, Dict[str, float]]) -> str:
  """'' when every level keeps both figures to TOLERANCE, else what falls
  short most, in words."""
  worst, what = 1.0 - TOLERANCE, ''
  for level, figures in ratios.items():
    for name, value in figures.items():
      if value < worst:
        label = 'contrast transfer' if name == 'transfer' else "NPW d'"
        worst, what = value, (f"at {level} it keeps {value:.2f} x the "
                              f"start's {label} of faint lesions")
  return what


def levels_of(inference_config) -> Sequence[str]:
  """The calibrated levels to check (all but 'full', which the
  adaptation's own criterion judges)."""
  return [level for level in strength_lib.LEVELS
          if level != 'full' and
          level in strength_lib.calibrated_levels(inference_config)]
