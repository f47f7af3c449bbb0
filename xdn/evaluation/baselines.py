"""Classical denoisers for the evaluation table, each told the noise level.

Every baseline is a pure numpy function
`(noisy [H, W] float in [0, 1], kind, level) -> denoised [H, W] float32 in
[0, 1]`, with `kind` and `level` as in `xdn.noise.synthetic` (gaussian:
sigma on the 0-255 scale; poisson: dose; salt_and_pepper: fraction;
speckle: factor std). They are tuned once from the level, as a user who
knows the noise would; no per-image search on the clean image.

How the level reaches the Gaussian denoisers (BM3D, NLM, TV, wavelet):
  gaussian          sigma / 255.
  poisson,          the generalised Anscombe transform (Makitalo & Foi 2013)
  poisson_gaussian  makes the noise Gaussian with unit variance; the image is
                    denoised in that domain and mapped back with the
                    closed-form approximation of the exact unbiased inverse.
                    This is the standard approach for shot noise (and
                    Anscombe + BM3D the standard Poisson baseline).
  speckle           the std of x * sigma * n over the image, estimated from
                    the noisy image's second moment.
  salt_and_pepper   the std of the impulses around a 3x3 median estimate of
                    the image; these denoisers are a poor fit for impulses,
                    which the median filter (the classical baseline) is for.
  correlated_gaussian
                    sigma / 255 and, for BM3D, the noise's power spectrum
                    (`xdn.noise.physics.bm3d_psd`): BM3D told the true PSD,
                    the strongest classical baseline for coloured noise.
                    NLM, TV and wavelet are told the pixel std only.
  xray              the counts are recovered from the display domain
                    (I = N0 exp(-mu x)), stabilised by the generalised
                    Anscombe transform with the electronic noise, denoised
                    there (BM3D told the detector kernel's PSD at unit
                    variance) and logged back.

Only numpy, scipy, scikit-image and bm3d are imported (no JAX), so worker
processes that run these are cheap to start. BM3D is an optional extra,
`pip install "xdn[baselines]"` (the `bm3d` package's licence is
non-commercial): without it every other baseline runs, and the default
list (`default_names`) leaves it out.
"""

import importlib.util
from typing import Callable, Dict, List, Sequence, Tuple

from absl import logging
import numpy as np
from scipy import ndimage

from xdn import errors
from xdn.noise import physics as noise_physics
from xdn.noise.synthetic import DEFAULT_READ_NOISE

Baseline = Callable[[np.ndarray, str, float], np.ndarray]

# Gaussian read noise of poisson_gaussian, sigma on the 0-255 scale; the
# default of xdn.noise.synthetic.add_noise and config.noise.read_noise.

_POISSON_KINDS = ('poisson', 'poisson_gaussian')


# ------------------------------------------------- variance stabilisation


def anscombe(counts: np.ndarray, read_sigma: float = 0.0) -> np.ndarray:
  """Generalised Anscombe transform of photon counts (+ Gaussian read noise).

  `read_sigma` is the read-noise std in counts. The result has noise of
  about unit variance, whatever the intensity.
  """
  return 2.0 * np.sqrt(np.maximum(counts + 0.375 + read_sigma**2, 0.0))


def inverse_anscombe(d: np.ndarray, read_sigma: float = 0.0) -> np.ndarray:
  """Closed-form approximation of the exact unbiased inverse (counts)."""
  # Below ~0.8 the series diverges; such values mean zero counts anyway.
  d = np.maximum(d, 0.8)
  s = np.sqrt(1.5)
  counts = (d**2 / 4 + s / 4 / d - 11 / 8 / d**2 + 5 * s / 8 / d**3 - 1 / 8
            - read_sigma**2)
  return np.maximum(counts, 0.0)


def _xray_stabilised(gaussian_denoiser: Callable[..., np.ndarray],
                     noisy: np.ndarray, dose: float, correlation: float,
                     electronic: float) -> np.ndarray:
  """A Gaussian denoiser on the stabilised counts of `xray` noise."""
  mu = noise_physics.MAX_LINE_INTEGRAL
  counts = dose * np.exp(-mu * noisy.astype(np.float64))
  z = anscombe(counts, electronic)
  lo, hi = anscombe(dose * np.exp(-mu), electronic), anscombe(dose,
                                                             electronic)
  scale = hi - lo
  denoised = gaussian_denoiser((z - lo) / scale, 1.0 / scale,
                               correlation=correlation)
  out_counts = np.maximum(inverse_anscombe(denoised * scale + lo, electronic),
                          0.5)
  return -np.log(out_counts / dose) / mu


def _stabilised(gaussian_denoiser: Callable[..., np.ndarray],
                noisy: np.ndarray, dose: float,
                read_noise: float) -> np.ndarray:
  """Runs a Gaussian denoiser on the Anscombe transform of Poisson data."""
  read_sigma = read_noise / 255.0 * dose
  z = anscombe(noisy * dose, read_sigma)
  # Rescale to about [0, 1] so the denoisers' defaults (made for that range)
  # still apply; the unit noise std shrinks by the same factor.
  lo, hi = anscombe(0.0, read_sigma), anscombe(dose, read_sigma)
  scale = hi - lo
  denoised = gaussian_denoiser((z - lo) / scale, 1.0 / scale)
  return inverse_anscombe(denoised * scale + lo, read_sigma) / dose


def noise_std(noisy: np.ndarray, kind: str, level: float) -> float:
  """Std of the noise in [0, 1] units, for the non-Poisson kinds."""
  if kind in ('gaussian', 'correlated_gaussian'):
    return level / 255.0
  if kind == 'speckle':
    # E[y^2] = E[x^2] (1 + sigma^2) and the noise std is sigma * rms(x).
    rms_x = np.sqrt(np.mean(np.square(noisy)) / (1 + level**2))
    return float(level * rms_x)
  if kind == 'salt_and_pepper':
    # Half the replaced pixels jump to 0, half to 1.
    x = ndimage.median_filter(noisy, size=3, mode='reflect')
    return float(np.sqrt(level / 2 * np.mean(x**2 + (1 - x)**2)))
  raise errors.UserError(f'noise_std: unknown noise kind {kind!r}; use one '
                         "of 'gaussian', 'speckle', 'salt_and_pepper' "
                         '(Poisson kinds are variance-stabilised instead)')


def _gaussian_baseline(
    gaussian_denoiser: Callable[[np.ndarray, float], np.ndarray]) -> Baseline:
  """Lifts `(image, sigma) -> denoised` to every noise kind."""

  def baseline(noisy: np.ndarray, kind: str, level: float, *,
               read_noise: float = DEFAULT_READ_NOISE,
               correlation: float = 0.0,
               electronic_noise: float = (
                   noise_physics.DEFAULT_ELECTRONIC_NOISE)) -> np.ndarray:
    noisy = _check(noisy)
    if level <= 0:
      return noisy.copy()
    if kind in _POISSON_KINDS:
      out = _stabilised(gaussian_denoiser, noisy, level,
                        read_noise if kind == 'poisson_gaussian' else 0.0)
    elif kind == 'xray':
      out = _xray_stabilised(gaussian_denoiser, noisy, level, correlation,
                             electronic_noise)
    else:
      out = gaussian_denoiser(
          noisy, noise_std(noisy, kind, level),
          correlation=correlation if kind == 'correlated_gaussian' else 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)

  baseline.__doc__ = gaussian_denoiser.__doc__
  return baseline


# ---------------------------------------------------- the denoisers proper


class _NumpyWithTrapz:
  """numpy, plus the `trapz` that numpy 2 removed (as `trapezoid`)."""

  def __getattr__(self, name):
    if name == 'trapz':
      return getattr(np, 'trapz', None) or np.trapezoid
    return getattr(np, name)


def _import_bm3d():
  """bm3d, an optional extra (`xdn[baselines]`: its licence is
  non-commercial), imported on first use: it is slow to import."""
  bm3d = errors.require('bm3d', 'baselines', 'the BM3D baseline')
  bm4d = errors.require('bm4d', 'baselines', 'the BM3D baseline')
  # bm3d's coloured-noise path (bm4d's PSD statistics) calls np.trapz,
  # gone in numpy >= 2; give that module alone a numpy that has it.
  if not hasattr(np, 'trapz') and bm4d.np is np:
    bm4d.np = _NumpyWithTrapz()
  return bm3d


def _bm3d(image: np.ndarray, sigma: float,
          correlation: float = 0.0) -> np.ndarray:
  """BM3D (Dabov et al. 2007; the `bm3d` package, both stages), told the
  noise's PSD when it is correlated."""
  bm3d = _import_bm3d()
  profile = bm3d.BM3DProfile()
  # One thread: on small images the library's thread start-up costs more
  # than it saves (0.43 s vs 0.75 s at 64x64), and evaluation already runs
  # one process per core.
  profile.num_threads = 1
  if correlation:
    psd = noise_physics.bm3d_psd(sigma, correlation, correlation, image.shape)
    return bm3d.bm3d(image, sigma_psd=psd, profile=profile)
  return bm3d.bm3d(image, sigma_psd=sigma, profile=profile)


def _nl_means(image: np.ndarray, sigma: float, correlation: float = 0.0
              ) -> np.ndarray:
  """Non-local means, scikit-image's recommended setting for known sigma."""
  from skimage import restoration  # pylint: disable=g-import-not-at-top
  # scikit-image's example uses h = 0.6-0.8 sigma with sigma given; 0.6 was
  # best on the chest_xray_sample training split (sigma 15-50).
  return restoration.denoise_nl_means(image, h=0.6 * sigma, sigma=sigma,
                                      patch_size=5, patch_distance=6,
                                      fast_mode=True)


# TV weight per unit of noise std, picked on the chest_xray_sample training
# split over Gaussian sigma 15-50 (PSNR is flat within +-20% of it).
TV_WEIGHT_PER_SIGMA = 1.0


def _total_variation(image: np.ndarray, sigma: float, correlation: float = 0.0
                     ) -> np.ndarray:
  """Total-variation denoising (Chambolle), weight proportional to sigma."""
  from skimage import restoration  # pylint: disable=g-import-not-at-top
  return restoration.denoise_tv_chambolle(
      image, weight=TV_WEIGHT_PER_SIGMA * sigma)


def _wavelet(image: np.ndarray, sigma: float, correlation: float = 0.0
             ) -> np.ndarray:
  """Wavelet shrinkage (BayesShrink, soft thresholds, db4) with sigma given."""
  import pywt  # pylint: disable=g-import-not-at-top
  from skimage import restoration  # pylint: disable=g-import-not-at-top
  wavelet = 'db4'
  top = pywt.dwt_max_level(min(image.shape), pywt.Wavelet(wavelet).dec_len)
  # scikit-image's default (top - 3) leaves a 64x64 image one level, which
  # cannot remove low-frequency noise (-2.5 dB at sigma 25); use at least 3.
  levels = max(top - 3, min(3, top), 1)
  return restoration.denoise_wavelet(image, sigma=sigma, wavelet=wavelet,
                                     method='BayesShrink', mode='soft',
                                     wavelet_levels=levels,
                                     rescale_sigma=True)


def median(noisy: np.ndarray, kind: str, level: float, *,
           read_noise: float = DEFAULT_READ_NOISE, correlation: float = 0.0,
           electronic_noise: float = 0.0) -> np.ndarray:
  """Median filter: 3x3, or 5x5 when over 20% of pixels are impulses."""
  del read_noise, correlation, electronic_noise  # The others' signature.
  noisy = _check(noisy)
  if level <= 0:
    return noisy.copy()
  size = 5 if kind == 'salt_and_pepper' and level > 0.2 else 3
  return ndimage.median_filter(noisy, size=size, mode='reflect')


def noisy_input(noisy: np.ndarray, kind: str, level: float, *,
                read_noise: float = DEFAULT_READ_NOISE,
                correlation: float = 0.0,
                electronic_noise: float = 0.0) -> np.ndarray:
  """The noisy image itself: the floor every denoiser must beat."""
  del kind, level, read_noise, correlation, electronic_noise
  return _check(noisy).copy()


def _check(noisy: np.ndarray) -> np.ndarray:
  noisy = np.asarray(noisy, np.float32)
  if noisy.ndim != 2:
    raise errors.UserError(f'baselines take one [H, W] image, got shape '
                           f'{noisy.shape}; squeeze the channel and loop over '
                           'the batch')
  return noisy


BASELINES: Dict[str, Baseline] = {
    'noisy': noisy_input,
    'median': median,
    'tv': _gaussian_baseline(_total_variation),
    'wavelet': _gaussian_baseline(_wavelet),
    'nlm': _gaussian_baseline(_nl_means),
    'bm3d': _gaussian_baseline(_bm3d),
}
# Names as they appear in tables and figures.
DISPLAY_NAMES: Dict[str, str] = {
    'noisy': 'noisy input', 'median': 'median', 'tv': 'TV',
    'wavelet': 'wavelet', 'nlm': 'NL-means', 'bm3d': 'BM3D',
}
# Seconds per 64x64 image are ~0.45 for BM3D on one CPU core; the rest take
# milliseconds. `choose(skip_slow=True)` leaves these out.
SLOW: Tuple[str, ...] = ('bm3d',)
# Baselines that need an optional package (the extra xdn[baselines]): its
# module.
OPTIONAL: Dict[str, str] = {'bm3d': 'bm3d'}


def get(name: str) -> Baseline:
  """The baseline called `name` (a key of BASELINES)."""
  if name not in BASELINES:
    raise errors.UserError(f'unknown baseline {name!r}; use one of '
                           f'{list(BASELINES)}')
  return BASELINES[name]


def installed(name: str) -> bool:
  """Whether baseline `name` can run here (its optional package is in)."""
  module = OPTIONAL.get(name)
  if module is None:
    return True
  try:  # Finds it without the slow import.
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def default_names() -> List[str]:
  """Every baseline that can run here; logs the ones left out."""
  names = [n for n in BASELINES if installed(n)]
  left_out = [n for n in BASELINES if n not in names]
  if left_out:
    logging.info('Baselines %s left out: not installed (pip install '
                 '"xdn[baselines]")', ', '.join(left_out))
  return names


def choose(names: Sequence[str], skip_slow: bool = False) -> List[str]:
  """`names` less the slow ones if `skip_slow`; raises `errors.UserError`
  for an unknown name and `errors.MissingExtra` for one not installed, here
  rather than in a worker process."""
  for name in names:
    get(name)
  chosen = [n for n in names if not (skip_slow and n in SLOW)]
  for name in chosen:
    if name in OPTIONAL:
      errors.require(OPTIONAL[name], 'baselines',
                     f'the {DISPLAY_NAMES[name]} baseline')
  return chosen


def apply(name: str, noisy: np.ndarray, kind: str, level: float,
          read_noise: float = DEFAULT_READ_NOISE, correlation: float = 0.0,
          electronic_noise: float = noise_physics.DEFAULT_ELECTRONIC_NOISE
          ) -> np.ndarray:
  """Runs baseline `name` on one [H, W] image."""
  return get(name)(noisy, kind, level, read_noise=read_noise,
                   correlation=correlation, electronic_noise=electronic_noise)


def _apply_packed(args: Tuple[str, np.ndarray, str, float, float, float,
                              float]) -> np.ndarray:
  return apply(*args)


def apply_many(name: str, noisy: np.ndarray, kind: str, level: float, *,
               read_noise: float = DEFAULT_READ_NOISE,
               correlation: float = 0.0,
               electronic_noise: float = noise_physics.DEFAULT_ELECTRONIC_NOISE,
               pool=None) -> np.ndarray:
  """Runs baseline `name` on each image of `noisy` [B, H, W, 1].

  With a `multiprocessing` pool the images are shared out over its workers.
  """
  noisy = np.asarray(noisy, np.float32)
  if noisy.ndim != 4 or noisy.shape[-1] != 1:
    raise errors.UserError(f'expected images shaped [B, H, W, 1], got '
                           f'{noisy.shape}')
  get(name)  # Fail here, not in a worker.
  tasks = [(name, image[..., 0], kind, float(level), float(read_noise),
            float(correlation), float(electronic_noise)) for image in noisy]
  if pool is None or name not in SLOW:
    outputs = list(map(_apply_packed, tasks))
  else:
    outputs = pool.map(_apply_packed, tasks, chunksize=1)
  return np.stack(outputs)[..., None].astype(np.float32)
