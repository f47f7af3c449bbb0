"""Estimating the noise of one radiograph from the image alone.

The estimators work on the finest Haar wavelet bands, which on a radiograph
hold little but noise: the diagonal band HH and the two edge bands (a
difference along one axis, a sum along the other). For noise of pixel std
sigma with neighbour correlations (rho_y, rho_x), separable as a detector
kernel is (`xdn.noise.physics`), their variances are

    var(HH)     = sigma^2 (1 - rho_y) (1 - rho_x)
    var(d_y)    = sigma^2 (1 - rho_y) (1 + rho_x)   (y difference, x sum)
    var(d_x)    = sigma^2 (1 + rho_y) (1 - rho_x)

so their ratios give the correlations and HH then gives the *pixel* std.
(The earlier estimator took the HH std as sigma, which holds for white
noise only: at rho = 0.68 it misses two thirds of the std.) Variances are
robust (median absolute deviation / 0.6745, Donoho & Johnstone 1994),
taken where clipping at 0 or 1 does not flatten the noise.

  * `estimate_gaussian_sigma`: the pixel std on the 0-255 scale.
  * `estimate_correlations`: (rho_y, rho_x).
  * `estimate_noise`: the Poisson-Gaussian law var(x) = a * x + b of Foi
    et al. (IEEE TIP 2008), fitted to robust variances in bins of local
    mean intensity, and the correlations. When the signal-dependent part
    is small the image is called Gaussian and the global estimate (more
    precise) gives its level.

Images are float arrays [H, W] in [0, 1]; levels are reported as a (a, b)
pair on that scale and, for Gaussian noise, sigma on the 0-255 scale.
Numpy only: the inference path calls it on every file.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

import numpy as np

from xdn import errors

if TYPE_CHECKING:
  from xdn.noise.spec import NoiseSpec  # pylint: disable=g-bad-import-order

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


# Correlations beyond this are not told to a model (none was trained there).
MAX_CORRELATION = 0.9


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
  """var = a * x + b on the [0, 1] scale, and the neighbour correlations.

  `kind` is 'gaussian' (a = 0), 'poisson_gaussian' or 'xray'; `rho_y`,
  `rho_x` the correlation of the noise of two pixels one apart along y and
  x (0: white noise; negative after edge-enhancing processing).
  `xray_dose` > 0: X-ray quanta per pixel unattenuated (N0), whose own
  variance law (`xdn.noise.physics.xray_variance`) adds to a * x + b.
  """
  kind: str
  a: float
  b: float
  rho_y: float = 0.0
  rho_x: float = 0.0
  xray_dose: float = 0.0

  @property
  def correlation(self) -> float:
    """The mean neighbour correlation a model is told, in [0, 0.9]."""
    return float(np.clip((self.rho_y + self.rho_x) / 2, 0.0,
                         MAX_CORRELATION))

  @property
  def sigma(self) -> float:
    """Gaussian sigma on the 0-255 scale (the b part alone)."""
    return 255.0 * float(np.sqrt(max(self.b, 0.0)))

  def std_at(self, x: float = 0.5) -> float:
    """The noise std on the 0-255 scale at clean intensity `x` (mid grey
    by default): one number for the noise level of any law, the one a
    calibrated strength level is read at (`xdn.inference.strength`)."""
    if self.xray_dose > 0:  # Its law; (a, b) is the line beside it.
      var = float(xray_variance_np(np.float64(x), self.xray_dose))
    else:
      var = self.a * x + self.b
    return 255.0 * float(np.sqrt(max(var, 0.0)))

  def describe(self) -> str:
    if self.kind == 'gaussian':
      text = f'Gaussian sigma={self.sigma:.1f} (0-255 scale)'
    elif self.kind == 'xray':
      text = f'X-ray quantum noise, {self.xray_dose:.4g} quanta per pixel'
    else:
      dose = 1.0 / self.a if self.a > 0 else float('inf')
      text = (f'Poisson-Gaussian a={self.a:.3g}, b={self.b:.3g} (dose '
              f'~{dose:.0f} photons at full intensity, read sigma '
              f'{self.sigma:.1f})')
    return (f'{text}, neighbour correlation {self.correlation:.2f} '
            f'(y {self.rho_y:.2f}, x {self.rho_x:.2f})')


def _haar_bands(image: np.ndarray) -> tuple[np.ndarray, ...]:
  """(2x2 block means, HH, y-difference, x-difference) bands of [H, W]."""
  x = np.asarray(image, np.float64)
  h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
  if h < 2 or w < 2:
    raise errors.UserError(f'image of shape {x.shape} is too small to '
                           'estimate its noise; state the noise instead '
                           '(e.g. gaussian:SIGMA)')
  x = x[:h, :w]
  p, q = x[0::2, 0::2], x[0::2, 1::2]
  r, s = x[1::2, 0::2], x[1::2, 1::2]
  # Orthonormal Haar: white noise of std sigma gives bands of std sigma.
  return ((p + q + r + s) / 4, (p - q - r + s) / 2, (p + q - r - s) / 2,
          (p - q + r - s) / 2)


def _robust_std(values: np.ndarray) -> float:
  # The absolute values are a fresh array: the median may reorder it in
  # place instead of copying it (same value, a third less time).
  return float(np.median(np.abs(values), overwrite_input=True) * _MAD_TO_STD)


def _correlation_table():
  """(ratio var(HH at scale 2) / var(HH at scale 1), rho) for the Gaussian
  detector kernels of `xdn.noise.physics`, rho increasing."""
  rho, ratio = [], []
  for width in np.concatenate([[0.0], np.linspace(0.2, 1.6, 141)]):
    j = np.arange(-8, 9)
    g = np.exp(-0.5 * (j / max(width, 1e-3))**2)
    g /= np.sqrt(np.sum(g**2))
    r = [np.sum(g[k:] * g[:len(g) - k]) for k in range(4)]
    # 1-D orthonormal Haar details: scale 1 (x0 - x1) / sqrt(2), scale 2
    # (x0 + x1 - x2 - x3) / 2; HH is the product of two such details.
    d1 = 1 - r[1]
    d2 = 1 + r[1] / 2 - r[2] - r[3] / 2
    rho.append(r[1])
    ratio.append((d2 / d1)**2)
  return np.array(ratio), np.array(rho)


_RATIO, _RHO = _correlation_table()
# Below this many pixels structure cannot be told from correlated noise
# (a 64x64 thumbnail's edges look like correlation): such images are taken
# as white unless the noise is stated.
MIN_PIXELS_FOR_CORRELATION = 128 * 128
_TWO_SCALE_MARGIN = 0.03


def _keep_unclipped(mean: np.ndarray, hh: np.ndarray,
                    scale: float) -> np.ndarray:
  """Blocks whose mean is two noise stds from 0 and 1, where clipping is
  rare (found iteratively from the pixel std, `scale` * var(HH))."""
  keep = np.ones(mean.shape, bool)
  sigma = _robust_std(hh) * np.sqrt(scale)
  for _ in range(3):
    unclipped = (mean > 2 * sigma) & (mean < 1 - 2 * sigma)
    if unclipped.sum() < _MIN_PER_BIN:
      break
    keep = unclipped
    sigma = _robust_std(hh[keep]) * np.sqrt(scale)
  final = (mean > 2 * sigma) & (mean < 1 - 2 * sigma)
  return final if final.sum() >= _MIN_PER_BIN else keep


def _correlations(mean: np.ndarray, hh: np.ndarray, dy: np.ndarray,
                  dx: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
  """(rho_y, rho_x) from the bands of the kept blocks.

  Two estimates of the mean correlation are made: from the edge bands
  (exact for any separable noise, but raised by the image's gradients) and
  from HH at two scales (blind to gradients, but assumes the Gaussian
  kernel family and is raised by curvature). Structure only ever raises
  them, so the second caps the first (which also gives the anisotropy).
  """
  if mean.size * 4 < MIN_PIXELS_FOR_CORRELATION:
    return 0.0, 0.0
  std_hh = _robust_std(hh[keep])
  v_hh = std_hh**2
  v_dy = _robust_std(dy[keep])**2
  v_dx = _robust_std(dx[keep])**2
  rho_x = (v_dy - v_hh) / max(v_dy + v_hh, 1e-20)
  rho_y = (v_dx - v_hh) / max(v_dx + v_hh, 1e-20)
  h, w = mean.shape[0] // 2 * 2, mean.shape[1] // 2 * 2
  m = mean[:h, :w]
  # HH of the 2x2 means, scaled to the orthonormal scale-2 coefficient.
  hh2 = (m[0::2, 0::2] - m[0::2, 1::2] - m[1::2, 0::2] + m[1::2, 1::2])
  # Kept by their 4x4 mean, which (orthogonal to hh2) does not select
  # for small or large coefficients, and far enough from 0 and 1 that the
  # 16 pixels are rarely clipped.
  m4 = (m[0::2, 0::2] + m[0::2, 1::2] + m[1::2, 0::2] + m[1::2, 1::2]) / 4
  sigma = std_hh * np.sqrt(_hh_to_pixel(rho_y, rho_x))
  keep2 = (m4 > 3 * sigma) & (m4 < 1 - 3 * sigma)
  if keep2.sum() < _MIN_PER_BIN:
    keep2 = np.ones_like(keep2)
  ratio = _robust_std(hh2[keep2])**2 / max(v_hh, 1e-20)
  two_scale = float(np.interp(ratio, _RATIO, _RHO))
  edges = (rho_y + rho_x) / 2
  # The two-scale estimate reads low where clipping is heavy (sigma 50):
  # it only caps the edge bands' estimate, with a margin for that.
  cap = two_scale + _TWO_SCALE_MARGIN
  if edges > 0 and cap < edges:
    rho_y, rho_x = rho_y * cap / edges, rho_x * cap / edges
  clip = lambda r: float(np.clip(r, -MAX_CORRELATION, MAX_CORRELATION))
  return clip(rho_y), clip(rho_x)


def _band_stats(image: np.ndarray):
  """(means, HH, unclipped mask, rho_y, rho_x) of an [H, W] image."""
  mean, hh, dy, dx = _haar_bands(image)
  keep = _keep_unclipped(mean, hh, 1.0)
  rho_y, rho_x = _correlations(mean, hh, dy, dx, keep)
  # Once more with the pixel std the correlation implies: correlated noise
  # reaches further towards 0 and 1 than its HH std says. (The intensity
  # bins keep the first mask: the dark end pins the read noise down.)
  wider = _keep_unclipped(mean, hh, _hh_to_pixel(rho_y, rho_x))
  rho_y, rho_x = _correlations(mean, hh, dy, dx, wider)
  return mean, hh, keep, rho_y, rho_x


def _hh_to_pixel(rho_y: float, rho_x: float) -> float:
  """var(pixel) / var(HH) for noise of these neighbour correlations."""
  return 1.0 / max((1 - rho_y) * (1 - rho_x), 1e-3)


def estimate_correlations(image: np.ndarray) -> tuple[float, float]:
  """The noise's neighbour correlations (rho_y, rho_x) of [H, W] in [0, 1]."""
  return _band_stats(image)[3:]


def estimate_gaussian_sigma(image: np.ndarray) -> float:
  """Pixel noise std on the 0-255 scale of an [H, W] image in [0, 1].

  Correlated noise is accounted for (see the module docstring). Noise
  clipped at 0 or 1 (as a saturating detector clips it) looks smaller: the
  estimate is taken on blocks whose mean is at least two stds away from
  both ends, where clipping is rare.
  """
  _, hh, keep, rho_y, rho_x = _band_stats(image)
  return 255.0 * _robust_std(hh[keep]) * np.sqrt(_hh_to_pixel(rho_y, rho_x))


def estimate_noise(image: np.ndarray) -> NoiseEstimate:
  """The noise of an [H, W] image in [0, 1]: Gaussian or Poisson-Gaussian,
  with its neighbour correlations."""
  mean, detail, keep, rho_y, rho_x = _band_stats(image)
  scale = _hh_to_pixel(rho_y, rho_x)
  sigma = _robust_std(detail[keep]) * np.sqrt(scale)
  # Pixel-variance units from here on.
  detail = detail * np.sqrt(scale)
  mean, detail, keep = mean.ravel(), detail.ravel(), keep.ravel()
  gaussian = NoiseEstimate('gaussian', 0.0, sigma**2, rho_y, rho_x)
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
  residual = np.sum(ns * (vs - (a * xs + b))**2)
  spread = np.sum(ns * (vs - np.average(vs, weights=ns))**2)
  middle = float(np.median(mean))
  dose = _xray_dose(xs, vs, ns, min(residual, spread), middle, sigma)
  if dose:
    # The line stays beside the law, for models never told the law.
    line = (a, b) if a > 0 else (0.0, sigma**2)
    return NoiseEstimate('xray', float(line[0]), float(max(line[1], 0.0)),
                         rho_y, rho_x, xray_dose=dose)
  # Keep the line only where it explains most of the variation between
  # bins: on small images the bins' variances scatter by chance.
  if a <= 0 or residual > (1 - _MIN_R2) * spread:
    return gaussian
  b = max(b, 0.0)
  if a * middle < _SIGNAL_DEPENDENT_SHARE * b:
    return gaussian
  # At the typical intensity the line must agree with the global estimate;
  # a steep line through a few scattered bins does not.
  if abs(np.sqrt(a * middle + b) / sigma - 1) > _MAX_DISAGREEMENT:
    return gaussian
  return NoiseEstimate('poisson_gaussian', float(a), float(b), rho_y, rho_x)


# X-ray law over the line: its weighted residual must be at most this share
# of the line's, with variances spanning this ratio or more (the law's
# curvature shows only over a wide range of intensities).
_XRAY_RESIDUAL_SHARE = 0.5
_XRAY_MIN_SPAN = 2.5
_XRAY_DOSES = np.geomspace(5.0, 1e6, 600)


def xray_variance_np(x: np.ndarray, dose) -> np.ndarray:
  """The X-ray law a model is told (`xdn.noise.synthetic.noise_std_map`):
  `noise_physics.xray_variance(x, dose, DEFAULT_ELECTRONIC_NOISE)` in numpy
  (this module runs without JAX), line integral 3 at x = 1 and 1 count of
  electronic noise. Tested to agree."""
  mu = 3.0
  counts = np.asarray(dose, np.float64) * np.exp(-mu * np.clip(x, 0, 1))
  s2 = (counts + 1.0) / counts**2
  return s2 * (1 + 1.5 * s2) / mu**2


def _xray_dose(xs: np.ndarray, vs: np.ndarray, ns: np.ndarray,
               other_residual: float, middle: float, sigma: float) -> float:
  """N0 of the X-ray law (quanta through the log transform) when it
  explains the binned variances clearly better than a line or a constant
  (`other_residual`, the smaller) and agrees with the global std at the
  median intensity; else 0."""
  if vs.min() <= 0 or vs.max() / vs.min() < _XRAY_MIN_SPAN:
    return 0.0
  model = xray_variance_np(xs[None], _XRAY_DOSES[:, None])
  residuals = np.sum(ns * (vs[None] - model)**2, axis=1)
  best = int(np.argmin(residuals))
  if residuals[best] > _XRAY_RESIDUAL_SHARE * other_residual:
    return 0.0
  dose = float(_XRAY_DOSES[best])
  agreement = np.sqrt(xray_variance_np(middle, dose)) / sigma
  if abs(agreement - 1) > _MAX_DISAGREEMENT:
    return 0.0
  return dose


def known_noise(kind: str, level: float, read_noise: float,
                correlation: float = 0.0,
                correlation_x: Optional[float] = None) -> NoiseEstimate:
  """The noise a user names (a noise spec, `xdn.noise.spec`: gaussian:25,
  correlated_gaussian:25,0.4): its (a, b) and correlations."""
  rho_x = correlation if correlation_x is None else correlation_x
  for rho in (correlation, rho_x):
    if not -MAX_CORRELATION <= rho <= MAX_CORRELATION:
      raise ValueError(f'a neighbour correlation must be in '
                       f'[-{MAX_CORRELATION}, {MAX_CORRELATION}], got {rho}')
  if kind == 'correlated_gaussian':
    return NoiseEstimate('gaussian', 0.0, (max(level, 0.0) / 255.0)**2,
                         correlation, rho_x)
  if kind == 'gaussian':
    return NoiseEstimate('gaussian', 0.0, (max(level, 0.0) / 255.0)**2)
  if kind == 'xray':
    if level <= 0:
      raise ValueError(f'xray needs quanta per pixel > 0, got {level}')
    # The line beside the law (for models never told it): its least-squares
    # fit over intensities 0.1-0.9.
    xs = np.linspace(0.1, 0.9, 33)
    a, b = np.polyfit(xs, xray_variance_np(xs, level), 1)
    return NoiseEstimate('xray', float(max(a, 0.0)), float(max(b, 0.0)),
                         correlation, rho_x, xray_dose=float(level))
  if kind in ('poisson', 'poisson_gaussian'):
    if level <= 0:
      raise ValueError(f'{kind} dose must be > 0, got {level}')
    b = (read_noise / 255.0)**2 if kind == 'poisson_gaussian' else 0.0
    return NoiseEstimate('poisson_gaussian', 1.0 / level, b)
  raise ValueError(f'noise kind {kind!r} cannot be given to the model; use '
                   'gaussian:SIGMA, correlated_gaussian:SIGMA,RHO, '
                   'poisson:DOSE, poisson_gaussian:DOSE or xray:N0,RHO, or '
                   'let it be estimated')


def told_noise(spec: Optional['NoiseSpec'], read_noise: float
               ) -> Optional[NoiseEstimate]:
  """The noise a model is told for a parsed noise spec (`xdn.noise.spec`,
  e.g. `spec.parse('correlated_gaussian:25,0.4', allow_auto=True)`): None
  for 'auto' (each image's noise estimated), else its (a, b) and
  correlations (`known_noise`; `read_noise`: poisson_gaussian's read-noise
  std, 0-255 scale). A kind no model can be told is a one-line error."""
  if spec is None:
    return None
  try:
    return known_noise(spec.kind, spec.level, read_noise, spec.correlation,
                       spec.correlation_x)
  except ValueError as e:
    raise errors.UserError(f'noise {spec.label}: {e}') from None


def noise_by_intensity(image: np.ndarray, bins: int = _BINS
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mean intensity, pixel noise std, count) per intensity bin, [0, 1] scale.

  Bins are quantiles of the 2x2 block means (unclipped blocks only); the
  std is the bin's robust HH std scaled to pixel std by the correlations.
  Bins with fewer than a few dozen blocks are left out.
  """
  mean, hh, keep, rho_y, rho_x = _band_stats(image)
  mean, hh = mean[keep], hh[keep] * np.sqrt(_hh_to_pixel(rho_y, rho_x))
  bins = max(1, min(bins, mean.size // _MIN_PER_BIN))
  edges = np.quantile(mean, np.linspace(0, 1, bins + 1))
  which = np.clip(np.searchsorted(edges, mean, side='right') - 1, 0, bins - 1)
  xs, stds, counts = [], [], []
  for k in range(bins):
    members = which == k
    if members.sum() >= _MIN_PER_BIN:
      xs.append(float(mean[members].mean()))
      stds.append(_robust_std(hh[members]))
      counts.append(int(members.sum()))
  return np.array(xs), np.array(stds), np.array(counts)
