"""Task-based image quality: does a faint lesion survive denoising?

Medical physics judges an imaging chain by what an observer can still
detect (AAPM TG-233; Samei et al.; Bath), not by PSNR. Three figures, each
from regions of interest (ROIs) centred on known lesion sites:

  * contrast transfer per lesion:
        <t, D(b + l + n) - D(b + n)> / <t, l>
    with the same noise n, t the lesion's own profile: 1 when a denoiser
    D keeps the lesion, less when it erases it.
  * NPW d': the non-prewhitening matched filter, template t, with the
    background known (the clean image subtracted from each ROI):
        d' = (mean t1 - mean t0) / sqrt((var t1 + var t0) / 2)
    over the sites, t1 / t0 the filter's response with / without lesion.
    For white noise this is the ideal observer, so no processing can raise
    it above the noisy input's; a good denoiser keeps it.
  * CHO d': a channelized Hotelling observer with Laguerre-Gauss channels
    (Barrett & Myers), d'^2 = dv^T S^-1 dv on the channel outputs, S their
    mean covariance. It learns the noise's correlations, as a human does
    in part.

A model observer is not a reader study: these say whether the signal a
reader would need is still there, not how a radiologist would read it.
Numpy only; ROIs are [N, R, R] arrays.
"""

from typing import Dict, Sequence, Tuple

import numpy as np


def rois(image: np.ndarray, sites: Sequence[Tuple[int, int]],
         size: int) -> np.ndarray:
  """[N, size, size] windows of [H, W] `image` centred on `sites`."""
  half = size // 2
  padded = np.pad(np.asarray(image, np.float64), half, mode='reflect')
  return np.stack([padded[y:y + size, x:x + size] for y, x in sites])


def contrast_transfer(with_lesion: np.ndarray, without: np.ndarray,
                      lesion: np.ndarray) -> np.ndarray:
  """Per-lesion transfer from ROIs [N, R, R] of D(b+l+n), D(b+n) and l."""
  template = lesion
  num = np.sum(template * (with_lesion - without), axis=(1, 2))
  den = np.sum(template * lesion, axis=(1, 2))
  return num / den


def _d_prime(t1: np.ndarray, t0: np.ndarray) -> float:
  pooled = np.sqrt((np.var(t1, ddof=1) + np.var(t0, ddof=1)) / 2)
  return float((np.mean(t1) - np.mean(t0)) / max(pooled, 1e-20))


def npw_d_prime(present: np.ndarray, absent: np.ndarray,
                template: np.ndarray) -> float:
  """NPW d' of background-subtracted ROIs [N, R, R] with / without lesion;
  `template` [R, R] (the lesion's profile)."""
  t1 = np.sum(present * template, axis=(1, 2))
  t0 = np.sum(absent * template, axis=(1, 2))
  return _d_prime(t1, t0)


def laguerre_gauss_channels(size: int, width: float,
                            count: int = 5) -> np.ndarray:
  """[count, size, size] Laguerre-Gauss channels of spread `width` px.

  u_j(r) = sqrt(2) / a * exp(-pi r^2 / a^2) L_j(2 pi r^2 / a^2), the usual
  CHO channels for round signals (a ~ 2-3 lesion widths).
  """
  c = (size - 1) / 2
  y, x = np.mgrid[0:size, 0:size] - c
  g = 2 * np.pi * (x**2 + y**2) / width**2
  channels = []
  for j in range(count):
    # Laguerre polynomial L_j by its recurrence.
    l_prev, l_cur = np.ones_like(g), 1 - g
    if j == 0:
      lj = l_prev
    else:
      for k in range(1, j):
        l_prev, l_cur = l_cur, ((2 * k + 1 - g) * l_cur - k * l_prev) / (k + 1)
      lj = l_cur
    channels.append(np.sqrt(2) / width * np.exp(-g / 2) * lj)
  return np.stack(channels)


def cho_d_prime(present: np.ndarray, absent: np.ndarray,
                channels: np.ndarray) -> float:
  """Channelized Hotelling d' of background-subtracted ROIs [N, R, R]."""
  u = channels.reshape(len(channels), -1)
  v1 = present.reshape(len(present), -1) @ u.T
  v0 = absent.reshape(len(absent), -1) @ u.T
  dv = v1.mean(0) - v0.mean(0)
  s = (np.cov(v1, rowvar=False) + np.cov(v0, rowvar=False)) / 2
  s = np.atleast_2d(s)
  # pinv: a noiseless (or rank-deficient) set has no finite d'; report 0
  # rather than fail.
  return float(np.sqrt(max(dv @ np.linalg.pinv(s, rcond=1e-10) @ dv, 0.0)))


def lesion_figures(clean: np.ndarray, lesion: np.ndarray,
                   out_with: np.ndarray, out_without: np.ndarray,
                   sites: Sequence[Tuple[int, int]], size: float
                   ) -> Dict[str, np.ndarray]:
  """Per-site ROIs of one image for the metrics above.

  `clean` the lesion-free clean image, `lesion` the inserted lesions alone,
  `out_with` / `out_without` a method's output on the image with / without
  them (same noise). ROI side: 8 lesion widths, odd.
  """
  roi = int(8 * size) | 1
  return {
      'lesion': rois(lesion, sites, roi),
      'with': rois(out_with, sites, roi),
      'without': rois(out_without, sites, roi),
      'clean': rois(clean, sites, roi),
  }


def summarise(parts: Sequence[Dict[str, np.ndarray]], size: float
              ) -> Dict[str, float]:
  """Contrast transfer (mean, 10th percentile), NPW d' and CHO d' over the
  ROIs of `lesion_figures` gathered from several images."""
  cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  transfer = contrast_transfer(cat['with'], cat['without'], cat['lesion'])
  present = cat['with'] - cat['clean']
  absent = cat['without'] - cat['clean']
  template = np.mean(cat['lesion'], 0)
  template = template / max(np.abs(template).max(), 1e-20)
  channels = laguerre_gauss_channels(present.shape[-1], 3.0 * size)
  return {
      'transfer_mean': float(np.mean(transfer)),
      'transfer_p10': float(np.percentile(transfer, 10)),
      'npw_d_prime': npw_d_prime(present, absent, template),
      'cho_d_prime': cho_d_prime(present, absent, channels),
      'sites': int(len(transfer)),
  }
