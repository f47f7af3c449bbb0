"""Estimating the noise of one radiograph from the image alone.

Two estimators, both on the finest diagonal (HH) Haar wavelet coefficients,
which on a radiograph hold little but noise:
  * `estimate_gaussian_sigma`: the median absolute deviation of the HH
    coefficients / 0.6745 (Donoho & Johnstone 1994; as
    `skimage.restoration.estimate_sigma`, with Haar instead of db2).
  * `estimate_noise`: the Poisson-Gaussian model var(x) = a * x + b of Foi
    et al. (IEEE TIP 2008), fitted to robust (MAD) variances of the HH
    coefficients in bins of local mean intensity. Bins where clipping at 0
    or 1 distorts the variance are left out. When the signal-dependent part
    is small the image is called Gaussian and `estimate_gaussian_sigma`
    (more precise) gives its level.

Images are float arrays [H, W] in [0, 1]; levels are reported as a (a, b)
pair on that scale and, for Gaussian noise, sigma on the 0-255 scale.
Numpy only: the inference path calls it on every file.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_MAD_TO_STD = 1 / 0.6745
_BINS = 16
_MIN_PER_BIN = 48
# Below this std (1/255) the noise is too weak to tell its kind.
_NEGLIGIBLE = 1 / 255
# Gaussian when the signal-dependent variance at the median intensity is
# below this fraction of the signal-independent one.
_SIGNAL_DEPENDENT_SHARE = 0.25
_MIN_R2 = 0.6
_MAX_DISAGREEMENT = 0.3


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
  """var = a * x + b on the [0, 1] scale.

  `kind` is 'gaussian' (a = 0) or 'poisson_gaussian'.
  """
  kind: str
  a: float
  b: float

  @property
  def sigma(self) -> float:
    """Gaussian sigma on the 0-255 scale (the b part alone)."""
    return 255.0 * float(np.sqrt(max(self.b, 0.0)))

  def describe(self) -> str:
    if self.kind == 'gaussian':
      return f'Gaussian sigma={self.sigma:.1f} (0-255 scale)'
    dose = 1.0 / self.a if self.a > 0 else float('inf')
    return (f'Poisson-Gaussian a={self.a:.3g}, b={self.b:.3g} (dose '
            f'~{dose:.0f} photons at full intensity, read sigma '
            f'{self.sigma:.1f})')


def _haar(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(2x2 block means, HH detail) of an [H, W] image (cropped to even)."""
  x = np.asarray(image, np.float64)
  h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
  if h < 2 or w < 2:
    raise ValueError(f'image of shape {x.shape} is too small to estimate its '
                     'noise; give the level (--noise=gaussian:SIGMA)')
  x = x[:h, :w]
  p, q = x[0::2, 0::2], x[0::2, 1::2]
  r, s = x[1::2, 0::2], x[1::2, 1::2]
  # Orthonormal Haar: white noise of std sigma gives HH of std sigma.
  return (p + q + r + s) / 4, (p - q - r + s) / 2


def _robust_std(values: np.ndarray) -> float:
  return float(np.median(np.abs(values)) * _MAD_TO_STD)


def estimate_gaussian_sigma(image: np.ndarray) -> float:
  """Gaussian noise sigma on the 0-255 scale of an [H, W] image in [0, 1].

  Noise clipped at 0 or 1 (as a saturating detector clips it) looks
  smaller: the estimate is refined on blocks whose mean is at least two
  sigmas away from both ends, where clipping is rare.
  """
  mean, detail = _haar(image)
  sigma = _robust_std(detail)
  for _ in range(3):
    unclipped = (mean > 2 * sigma) & (mean < 1 - 2 * sigma)
    if unclipped.sum() < _MIN_PER_BIN:
      break
    sigma = _robust_std(detail[unclipped])
  return 255.0 * sigma


def estimate_noise(image: np.ndarray) -> NoiseEstimate:
  """The noise of an [H, W] image in [0, 1]: Gaussian or Poisson-Gaussian."""
  mean, detail = _haar(image)
  sigma = estimate_gaussian_sigma(image) / 255.0
  mean, detail = mean.ravel(), detail.ravel()
  # Leave out where clipping flattens the noise: within 2 std of 0 or 1.
  keep = (mean > 2 * sigma) & (mean < 1 - 2 * sigma)
  gaussian = NoiseEstimate('gaussian', 0.0, sigma**2)
  bins = min(_BINS, int(keep.sum()) // _MIN_PER_BIN)
  if bins < 3 or sigma < _NEGLIGIBLE:
    return gaussian
  mean, detail = mean[keep], detail[keep]
  edges = np.quantile(mean, np.linspace(0, 1, bins + 1))
  which = np.clip(np.searchsorted(edges, mean, side='right') - 1, 0,
                  bins - 1)
  xs, vs, ns = [], [], []
  for k in range(bins):
    members = which == k
    if members.sum() >= _MIN_PER_BIN:
      xs.append(mean[members].mean())
      vs.append(_robust_std(detail[members])**2)
      ns.append(members.sum())
  if len(xs) < 3 or np.ptp(xs) < 0.05:
    return gaussian
  xs, vs, ns = map(np.asarray, (xs, vs, ns))
  a, b = np.polyfit(xs, vs, 1, w=np.sqrt(ns))
  # Keep the line only where it explains most of the variation between
  # bins: on small images the bins' variances scatter by chance.
  residual = np.sum(ns * (vs - (a * xs + b))**2)
  spread = np.sum(ns * (vs - np.average(vs, weights=ns))**2)
  if a <= 0 or residual > (1 - _MIN_R2) * spread:
    return gaussian
  b = max(b, 0.0)
  middle = float(np.median(mean))
  if a * middle < _SIGNAL_DEPENDENT_SHARE * b:
    return gaussian
  # At the typical intensity the line must agree with the global estimate;
  # a steep line through a few scattered bins does not.
  if abs(np.sqrt(a * middle + b) / sigma - 1) > _MAX_DISAGREEMENT:
    return gaussian
  return NoiseEstimate('poisson_gaussian', float(a), float(b))


def known_noise(kind: str, level: float, read_noise: float) -> NoiseEstimate:
  """The (a, b) of a noise the user names (`--noise=gaussian:25`)."""
  if kind == 'gaussian':
    return NoiseEstimate('gaussian', 0.0, (max(level, 0.0) / 255.0)**2)
  if kind in ('poisson', 'poisson_gaussian'):
    if level <= 0:
      raise ValueError(f'{kind} dose must be > 0, got {level}')
    b = (read_noise / 255.0)**2 if kind == 'poisson_gaussian' else 0.0
    return NoiseEstimate('poisson_gaussian', 1.0 / level, b)
  raise ValueError(f'noise kind {kind!r} cannot be given to the model; use '
                   "gaussian:SIGMA, poisson:DOSE or poisson_gaussian:DOSE")
