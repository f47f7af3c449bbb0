"""A scanner's noise texture, measured on its noisy images alone.

The noise of a real detector is not white: its processing (the detector's
own blur, then a vendor's edge enhancement) shapes its power spectrum, and
no two vendors shape it alike. `estimate_kernel` measures that shape the way
a medical physicist measures an NPS (IEC 62220-1, AAPM TG-233): on the
flattest regions of the images, each detrended by a quadratic surface so
that anatomy's slow variation is not taken for noise. The normalised NPS
then gives a zero-phase kernel k (sum k^2 = 1) whose filtered white noise
has that NPS: `xdn.inference.adaptation` draws fresh noise of the scanner's own
texture with it, so that it can recorrupt a noisy image without knowing the
clean one.

Images are float [H, W] arrays in [0, 1]; numpy only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from xdn import errors
from xdn.metrics import image_quality
from xdn.noise import physics as noise_physics
from xdn.noise import report as noise_report

# Side of the flat regions (px): the NPS resolution. 64, not 32: detrending
# a 32 px region takes away much of correlated noise's low-frequency power
# (measured on 1024^2 radiographs, the kernel's error against the true
# noise's was 0.11 at 32 px and 0.04 at 64 px for correlation 0.5).
REGION = 64
SMALL_REGION = 32  # For images under REGION.
RADIUS = 7  # The kernel is (2 RADIUS + 1)^2: correlations up to 7 px.


def flat_regions_per_image(images: Sequence[np.ndarray],
                           region: int = REGION, fraction: float = 0.25
                           ) -> list[Optional[noise_report.FlatRegions]]:
  """Each image's detrended flattest `fraction` of regions
  (`noise_report.flat_regions`); None for an image too small or clipped
  everywhere."""
  found = []
  for image in images:
    image = np.asarray(image, np.float64)
    if min(image.shape) < region:
      found.append(None)
      continue
    try:
      found.append(noise_report.flat_regions(image, region, fraction))
    except ValueError:  # No unclipped region: nothing to learn from it.
      found.append(None)
  return found


def pooled_residuals(regions: Sequence[Optional[noise_report.FlatRegions]],
                     region: int) -> np.ndarray:
  """The residuals of `flat_regions_per_image`, pooled: [N, region,
  region]."""
  pooled = [r.residuals for r in regions if r is not None]
  if not pooled:
    raise errors.UserError(
        f'no unclipped {region}x{region} region in the images to measure '
        'the noise texture on; give images of at least that size')
  return np.concatenate(pooled)


def flat_residuals(images: Sequence[np.ndarray], region: int = REGION,
                   fraction: float = 0.25) -> np.ndarray:
  """The detrended flattest `fraction` of each image's regions, pooled:
  [N, region, region]. Images too small or clipped everywhere add none."""
  return pooled_residuals(flat_regions_per_image(images, region, fraction),
                          region)


def kernel_from_nps(nps: np.ndarray, radius: int = RADIUS) -> np.ndarray:
  """The centred [2r+1, 2r+1] zero-phase kernel whose filtered unit white
  noise has the shape of the 2-D `nps` (any scale), sum k^2 = 1.

  The kernel is the inverse DFT of sqrt(NPS): its autocorrelation is the
  NPS's, so its noise has that spectrum up to the crop to 2r+1 taps.
  """
  nps = np.maximum(np.asarray(nps, np.float64), 0.0)
  if nps.ndim != 2 or nps.sum() <= 0:
    raise ValueError(f'expected a positive 2-D NPS, got shape {nps.shape}')
  kernel = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(nps / nps.mean()))))
  cy, cx = nps.shape[0] // 2, nps.shape[1] // 2
  r = min(radius, cy, cx)
  kernel = kernel[cy - r:cy + r + 1, cx - r:cx + r + 1]
  return (kernel / np.sqrt(np.sum(kernel**2))).astype(np.float32)


def region_for(images: Sequence[np.ndarray]) -> int:
  """REGION, or SMALL_REGION where no image holds a REGION-sized one."""
  fits = any(min(np.shape(i)) >= REGION for i in images)
  return REGION if fits else SMALL_REGION


def estimate_kernel(images: Sequence[np.ndarray], radius: int = RADIUS,
                    region: int = 0) -> np.ndarray:
  """The noise texture of `images` (one scanner's) as a unit kernel;
  `region` 0: `region_for` the images."""
  region = region or region_for(images)
  return kernel_from_nps(
      image_quality.nps_of_rois(flat_residuals(images, region)), radius)


def estimate_correlation(images: Sequence[np.ndarray]) -> float:
  """The mean neighbour correlation of the images' noise texture: works on
  training crops too small for `xdn.noise.estimation` to measure it."""
  return float(np.mean(kernel_correlations(estimate_kernel(images))))


def kernel_correlations(kernel: np.ndarray) -> tuple[float, float]:
  """(rho_y, rho_x): the neighbour correlations of the kernel's noise."""
  k = np.asarray(kernel, np.float64)
  total = np.sum(k * k)
  return (float(np.sum(k[1:] * k[:-1]) / total),
          float(np.sum(k[:, 1:] * k[:, :-1]) / total))


def kernel_of_correlations(rho_y: float, rho_x: float,
                           radius: int = RADIUS) -> np.ndarray:
  """The unit kernel of xdn's correlated noise (a separable sampled
  Gaussian, `xdn.noise.physics`) of neighbour correlations rho_y, rho_x:
  the texture when no flat region can be measured."""
  def axis(rho):
    width = float(noise_physics.kernel_width(np.float32(max(rho, 0.0))))
    g = noise_physics.kernel_np(width)
    c = len(g) // 2
    r = min(radius, c)
    return g[c - r:c + r + 1]
  kernel = np.outer(axis(rho_y), axis(rho_x))
  return (kernel / np.sqrt(np.sum(kernel**2))).astype(np.float32)
