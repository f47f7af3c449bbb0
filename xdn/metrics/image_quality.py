"""Noise texture and resolution of a denoiser: NPS and TTF (AAPM TG-233).

A denoiser changes two things a medical physicist measures separately:

  * how much noise is left and what it looks like, the noise power spectrum
    (NPS). Its integral is the pixel variance; its shape is the texture.
    Denoisers that only lower the variance but pile the rest of the noise
    into low frequencies leave a blotchy, "plastic" image that readers
    reject even at a lower std, so the shape is reported on its own (peak
    and mean frequency, and a peak-normalised shape difference).
  * how sharp the signal stays, the task transfer function (TTF): the MTF
    measured on an object of the task's contrast rather than on a wire or a
    sharp edge, because a nonlinear (e.g. learned) method blurs a faint
    object more than a bright one. Measured on the radial edge of inserted
    discs.

The noise is isolated by the subtraction method: two realisations of the
same clean image through the method, (D(x+n1) - D(x+n2)) / sqrt(2), which
removes the image and any deterministic bias and keeps the variance of one
output. The object response is D(x + disc + n) - D(x + n) with the same n.

Conventions: pixel (y, x) has its centre at integer coordinates (y, x);
frequencies are in cycles/pixel, numpy FFT order for 2-D spectra.
Numpy only, so it imports fast and runs where jax is not wanted.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def noise_from_pair(out1: np.ndarray, out2: np.ndarray) -> np.ndarray:
  """Noise-only image from two outputs of the same clean image, [H, W].

  (out1 - out2) / sqrt(2): the difference cancels the image and any bias;
  the sqrt(2) restores the variance of a single realisation.
  """
  diff = np.asarray(out1, np.float64) - np.asarray(out2, np.float64)
  return diff / np.sqrt(2.0)


def detrend_plane(tiles: np.ndarray) -> np.ndarray:
  """[N, R, R] tiles minus each one's least-squares plane a + b*y + c*x
  (TG-233's NPS detrending, `nps_2d`)."""
  n, r, _ = tiles.shape
  y, x = np.mgrid[0:r, 0:r] - (r - 1) / 2
  design = np.stack([np.ones(r * r), y.ravel(), x.ravel()], axis=1)
  flat = tiles.reshape(n, r * r).T
  coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
  return (flat - design @ coef).T.reshape(n, r, r)


def detrend_quadratic(block: np.ndarray) -> np.ndarray:
  """One square [n, n] block minus its least-squares quadratic surface
  (IEC 62220-1's flat-region detrending: anatomy's slow curvature is not
  taken for noise)."""
  n = block.shape[0]
  y, x = np.mgrid[0:n, 0:n] / n - 0.5
  basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y],
                   -1).reshape(-1, 6)
  coef, *_ = np.linalg.lstsq(basis, block.ravel(), rcond=None)
  return block - (basis @ coef).reshape(n, n)


def nps_2d(noise_images: Sequence[np.ndarray], roi: int = 64,
           mask: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
  """2-D noise power spectrum, [roi, roi] in numpy FFT order (pixel units^2).

  Each [H, W] noise image is tiled into non-overlapping roi x roi ROIs
  (with `mask`, one boolean [H, W] per image, only ROIs entirely inside
  it); each ROI is detrended by its mean plane (TG-233: a residual ramp
  from shading or bias would masquerade as low-frequency noise), and
  NPS = |DFT|^2 / roi^2 averaged over all ROIs. With this normalisation
  mean(NPS) is the pixel variance (Parseval), i.e. its integral over
  [-0.5, 0.5]^2 cycles/pixel.

  The plane fit also removes some true noise power next to DC, on the
  fx = 0 and fy = 0 axes at the lowest few frequency steps (30 % at
  |k| = 1 for white noise, more for low-pass noise, whose power sits
  there). Radially averaged, the first non-empty bin reads ~15 % low for
  white noise with bins 1-2 steps wide (roi 64 or 128 with 32 bins),
  ~20 % for noise blurred by 1.5 px, and 3-6 % with bins 8 steps wide
  (roi 256), so the peak of a low-pass NPS can land one bin high with
  small ROIs.

  Raises:
    ValueError: no ROI fits (images too small or masks too tight).
  """
  if mask is not None and len(mask) != len(noise_images):
    raise ValueError(f'{len(mask)} masks for {len(noise_images)} images')
  total = np.zeros((roi, roi))
  count = 0
  for i, image in enumerate(noise_images):
    image = np.asarray(image, np.float64)
    h, w = image.shape
    keep = None if mask is None else np.asarray(mask[i], bool)
    tiles = []
    for y0 in range(0, h - roi + 1, roi):
      for x0 in range(0, w - roi + 1, roi):
        if keep is not None and not keep[y0:y0 + roi, x0:x0 + roi].all():
          continue
        tiles.append(image[y0:y0 + roi, x0:x0 + roi])
    if not tiles:
      continue
    # Per image, so memory stays bounded by one image's ROIs.
    spectra = np.fft.fft2(detrend_plane(np.stack(tiles)))
    total += np.sum(np.abs(spectra)**2, axis=0)
    count += len(tiles)
  if count == 0:
    raise ValueError(
        f'no {roi}x{roi} ROI fits inside the {len(noise_images)} image(s)'
        + ('' if mask is None else ' and their masks')
        + '; use a smaller roi or larger images / masks')
  return total / (count * roi * roi)


def nps_of_rois(rois: np.ndarray) -> np.ndarray:
  """2-D NPS of zero-mean (already detrended) ROIs [N, R, R]: the mean of
  |DFT|^2 / R^2, normalised as `nps_2d`."""
  rois = np.asarray(rois, np.float64)
  r = rois.shape[-1]
  return np.mean(np.abs(np.fft.fft2(rois))**2, axis=0) / (r * r)


def _frequency_grid(shape: Tuple[int, ...]) -> np.ndarray:
  """|f| in cycles/pixel of each bin of a 2-D spectrum in FFT order."""
  fy = np.fft.fftfreq(shape[0])[:, None]
  fx = np.fft.fftfreq(shape[1])[None, :]
  return np.sqrt(fy**2 + fx**2)


def radial_nps(nps: np.ndarray, bins: int = 32
               ) -> Tuple[np.ndarray, np.ndarray]:
  """Radial average of a 2-D NPS: (bin centres in cycles/pixel, values).

  `bins` equal bins over [0, 0.5] (the corners beyond Nyquist, which only
  diagonal directions reach, are left out); DC is excluded. A bin holding
  no frequency sample is nan: with the defaults (roi 64, 32 bins, width
  1/64 = the frequency step) that is the first one, so use fewer bins or
  larger ROIs for a curve with no gaps.
  """
  f = _frequency_grid(nps.shape).ravel()
  values = np.asarray(nps, np.float64).ravel()
  keep = (f > 0) & (f <= 0.5)
  # Nyquist itself goes in the last bin, not one past it.
  index = np.minimum((f[keep] * 2 * bins).astype(int), bins - 1)
  sums = np.bincount(index, values[keep], minlength=bins)
  counts = np.bincount(index, minlength=bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    means = np.where(counts > 0, sums / counts, np.nan)
  centres = (np.arange(bins) + 0.5) * 0.5 / bins
  return centres, means


def nps_frequencies(nps: np.ndarray) -> Dict[str, float]:
  """Summary of a 2-D NPS: variance, std, mean and peak frequency.

  `mean_frequency` is TG-233's average frequency, sum(|f| NPS) / sum(NPS)
  over all 2-D bins but DC (cycles/pixel): lower means coarser texture.
  `peak_frequency` is the bin centre of the maximum of `radial_nps(nps)`
  (32 bins; see `nps_2d` on the low first bin with small ROIs).
  """
  nps = np.asarray(nps, np.float64)
  f = _frequency_grid(nps.shape)
  ac = f > 0
  variance = float(np.mean(nps))
  power = float(np.sum(nps[ac]))
  mean_f = float(np.sum(f[ac] * nps[ac]) / power) if power > 0 else np.nan
  centres, values = radial_nps(nps)
  peak = (float(centres[np.nanargmax(values)])
          if np.isfinite(values).any() else np.nan)
  return {
      'variance': variance,
      'std': float(np.sqrt(max(variance, 0.0))),
      'mean_frequency': mean_f,
      'peak_frequency': peak,
  }


def nps_shape_rmsd(reference: np.ndarray, other: np.ndarray) -> float:
  """RMS difference of two radial NPS curves after normalising each to
  peak 1: a texture difference independent of the noise magnitude.

  Both are 1-D [bins] curves from `radial_nps` with the same bins; nan bins
  in either are ignored. 0 means the same texture. The peak normalisation
  sets the scale: published comparisons give about 0.03-0.07 for
  deep-learning CT reconstructions against filtered back-projection and
  0.38 for a strong iterative reconstruction.
  """
  a = np.asarray(reference, np.float64)
  b = np.asarray(other, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f'need two 1-D curves of equal length, got {a.shape} '
                     f'and {b.shape}')
  a = a / np.nanmax(a)
  b = b / np.nanmax(b)
  both = np.isfinite(a) & np.isfinite(b)
  return float(np.sqrt(np.mean((a[both] - b[both])**2)))


def disc_image(shape: Tuple[int, int], centre: Tuple[float, float],
               radius: float, contrast: float = 1.0,
               supersample: int = 8) -> np.ndarray:
  """Anti-aliased disc, float64 [H, W]: contrast x the fraction of each
  pixel's supersample x supersample sub-pixel points inside the circle
  (centre (y, x) and radius in pixels)."""
  y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
  cy, cx = centre
  offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
  inside = np.zeros(shape)
  # One sub-pixel offset at a time: memory stays at one image.
  for dy in offsets:
    for dx in offsets:
      inside += (y + dy - cy)**2 + (x + dx - cx)**2 <= radius**2
  return contrast * inside / supersample**2


def edge_spread(image: np.ndarray, centre: Tuple[float, float],
                radius: float, oversample: int = 10, extent: float = 2.0
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Radial edge-spread function of a disc in [H, W] `image` at `centre`.

  Pixels at distance r in [0, extent * radius] px from `centre`, binned at
  1 / oversample px (the sub-pixel centre spreads the pixels over the
  bins); mean per bin, empty bins linearly interpolated. Returns (bin
  centre distances in px, ESF) of length ceil(extent * radius * oversample).
  """
  image = np.asarray(image, np.float64)
  y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]]
  r = np.hypot(y - centre[0], x - centre[1]).ravel()
  nbins = int(np.ceil(extent * radius * oversample))
  keep = r <= extent * radius
  index = np.minimum((r[keep] * oversample).astype(int), nbins - 1)
  sums = np.bincount(index, image.ravel()[keep], minlength=nbins)
  counts = np.bincount(index, minlength=nbins)
  distances = (np.arange(nbins) + 0.5) / oversample
  full = counts > 0
  esf = np.interp(distances, distances[full], sums[full] / counts[full])
  return distances, esf


def _mtf(esf: np.ndarray, centre: int, half_width: int,
         n_fft: int) -> np.ndarray:
  """|FFT| of the Hann-windowed derivative of an ESF, 1 at f = 0."""
  lsf = np.gradient(esf)
  k = np.arange(len(lsf)) - centre
  # Hann taper on the edge: the LSF tails are noise only, and an abrupt
  # cut would ring in the spectrum.
  window = np.where(np.abs(k) < half_width,
                    0.5 * (1 + np.cos(np.pi * k / half_width)), 0.0)
  spectrum = np.abs(np.fft.rfft(lsf * window, n_fft))
  if spectrum[0] == 0:
    raise ValueError('the edge has no contrast: the TTF is undefined')
  return spectrum / spectrum[0]


def _first_crossing(f: np.ndarray, curve: np.ndarray, level: float) -> float:
  """First frequency where `curve` falls to `level` (linear interpolation
  between samples, nans skipped); 0.5 (Nyquist) if it never does."""
  ok = np.isfinite(curve)
  f, curve = f[ok], curve[ok]
  below = np.nonzero(curve <= level)[0]
  if len(below) == 0:
    return 0.5
  i = below[0]
  if i == 0:
    return float(f[0])
  c0, c1 = curve[i - 1], curve[i]
  return float(f[i - 1] + (c0 - level) / (c0 - c1) * (f[i] - f[i - 1]))


def ttf(measured: Sequence[np.ndarray], ideal: Sequence[np.ndarray],
        centres: Sequence[Tuple[float, float]], radius: float,
        oversample: int = 10) -> Dict[str, np.ndarray]:
  """Task transfer function from inserted discs of `radius` px.

  measured[i] [H, W]: a method's response to disc i, D(x + disc + n) -
  D(x + n) with the same noise n (averaged over realisations if wanted);
  ideal[i]: the inserted disc alone; centres[i]: its (y, x). The radial
  ESFs of all discs are averaged (measured and ideal apart), differentiated
  to LSFs, Hann-windowed over +-radius around the ideal's edge, and Fourier
  transformed; TTF = MTF_measured / MTF_ideal, so the identity gives
  exactly 1 and the discs' own pixelation cancels. The TTF is normalised
  at f = 0: it is the shape of the blur, not the contrast loss.

  The window also narrows the measured LSF: for a Gaussian blur of std s
  it overstates f50 by about 2.5 (s / radius)^2 (2.5 % at s = radius /
  10, 7 % at radius / 6), so use a radius of at least 10 s.

  Returns:
    'frequency' [F] cycles/pixel in [0, 0.5]; 'ttf' [F], nan where
    MTF_ideal < 1e-3 of its peak (no signal to compare); 'f50', 'f10'
    (floats, cycles/pixel): first frequencies where the TTF falls to 0.5 /
    0.1, 0.5 if it never does.
  """
  if not len(measured) == len(ideal) == len(centres) > 0:
    raise ValueError('need one measured and one ideal image per centre')
  esf_m = np.mean([edge_spread(m, c, radius, oversample)[1]
                   for m, c in zip(measured, centres)], axis=0)
  esf_i = np.mean([edge_spread(d, c, radius, oversample)[1]
                   for d, c in zip(ideal, centres)], axis=0)
  edge = int(np.argmax(np.abs(np.gradient(esf_i))))
  half_width = int(round(radius * oversample))
  # Zero-padding only interpolates the spectrum, onto a grid fine enough
  # to read f50 from (oversample / 4096 = 2.4e-3 c/px at the default).
  n_fft = max(4096, 1 << int(np.ceil(np.log2(len(esf_i)))))
  freq = np.fft.rfftfreq(n_fft, d=1.0 / oversample)
  mtf_m = _mtf(esf_m, edge, half_width, n_fft)
  mtf_i = _mtf(esf_i, edge, half_width, n_fft)
  band = freq <= 0.5
  freq, mtf_m, mtf_i = freq[band], mtf_m[band], mtf_i[band]
  valid = mtf_i > 1e-3 * mtf_i.max()
  ratio = np.full_like(mtf_i, np.nan)
  ratio[valid] = mtf_m[valid] / mtf_i[valid]
  return {
      'frequency': freq,
      'ttf': ratio,
      'f50': _first_crossing(freq, ratio, 0.5),
      'f10': _first_crossing(freq, ratio, 0.1),
  }
