"""A noise report for one radiograph: what a physicist looks at first.

The library half of `xdn-noise` (`xdn.cli.noise`); xdn-denoise --example
and the adaptation (`xdn.inference.adaptation`, through
`xdn.noise.texture`) use its measurements too. `write` writes
`<name>_noise.json` and `<name>_noise.png` with
  * the noise estimate xdn's denoiser is told (`xdn.noise.estimation`):
    its variance law, pixel std and neighbour correlations;
  * the noise std against intensity (per intensity bin, and the fitted law);
  * a flat-region measurement beside it: in the flattest quarter of the
    image's 64x64 regions (least low-pass structure), each region detrended
    by a quadratic surface, the pixel std and neighbour correlations;
  * the radial noise power spectrum (NPS) of those regions, as IEC 62220-1
    computes it: |FFT|^2 of the detrended regions averaged, times the pixel
    area over the region size, so that its integral over frequency is the
    variance. Frequencies in cycles per pixel (and per mm when the file
    states its pixel spacing); NPS on the 0-255 scale.

Given the denoised image too (`after_report`; `write(..., after=)`), the
*after* side, for a real radiograph with no clean copy: in
the same flat regions, the std and NPS of the output beside the input's,
the shift of the NPS mean and peak frequency, and its shape RMSD (the
texture: a denoiser that leaves only low-frequency noise looks waxy), with
the fine-scale noise kept and the low-pass agreement of
`denoising_check`.

All units: intensities on the image's [0, 1] scale as xdn reads it, stds
and NPS on the 0-255 scale. Numpy (and matplotlib for the figure) only.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional

import numpy as np

from xdn import errors
from xdn.io import atomic
from xdn.metrics import image_quality
from xdn.noise import estimation as noise_estimation

REGION = 64
# Radial NPS bins of the after side: 1/32 cycles/px, so each holds samples
# of a 64-px region's frequency grid.
AFTER_BINS = 16


@dataclasses.dataclass
class FlatRegions:
  """Detrended flat regions [N, REGION, REGION] and their positions."""
  residuals: np.ndarray
  corners: List[tuple]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur (reflect borders), numpy only."""
  radius = int(3 * sigma + 0.5)
  j = np.arange(-radius, radius + 1)
  g = np.exp(-0.5 * (j / sigma)**2)
  g /= g.sum()
  out = np.pad(image, radius, mode='reflect')
  out = sum(g[k] * out[k:k + image.shape[0]] for k in range(len(g)))
  return sum(g[k] * out[:, k:k + image.shape[1]] for k in range(len(g)))


def blocks_flattest(image: np.ndarray, block: int = 32,
                    fraction: float = 0.25) -> List[tuple]:
  """Corners of the flattest `fraction` of the [H, W] image's block x block
  blocks, judged on its low-pass (sigma 4 px) detrended structure, so a
  block is not chosen for having little noise by chance; blocks touching
  clipped pixels (0 or 1) or constant are left out."""
  smooth = gaussian_blur(np.asarray(image, np.float64), 4.0)
  scores, corners = [], []
  for y in range(0, image.shape[0] - block + 1, block):
    for x in range(0, image.shape[1] - block + 1, block):
      raw = image[y:y + block, x:x + block]
      # Not blank or clipped (collimation, burnt-in labels): no noise there.
      if raw.min() <= 0.0 or raw.max() >= 1.0 or np.ptp(raw) == 0:
        continue
      scores.append(np.std(image_quality.detrend_quadratic(
          smooth[y:y + block, x:x + block])))
      corners.append((y, x))
  if not corners:
    raise errors.UserError(f'no unclipped {block}x{block} region in an '
                           f'image of shape {image.shape}: too small, or '
                           'blank or saturated everywhere')
  order = np.argsort(scores)[:max(1, int(round(len(corners) * fraction)))]
  return [corners[i] for i in order]


def flat_regions(image: np.ndarray, region: int = REGION,
                 fraction: float = 0.25) -> FlatRegions:
  """The flattest `fraction` of the image's non-overlapping regions.

  Chosen by `blocks_flattest`.
  """
  image = np.asarray(image, np.float64)
  chosen = blocks_flattest(image, region, fraction)
  residuals = np.stack([
      image_quality.detrend_quadratic(image[y:y + region, x:x + region])
      for y, x in chosen])
  return FlatRegions(residuals, chosen)


def neighbour_correlations(residuals: np.ndarray) -> tuple:
  """(rho_y, rho_x) of zero-mean residual regions [N, H, W]."""
  var = np.mean(residuals**2)
  rho_y = np.mean(residuals[:, 1:] * residuals[:, :-1]) / var
  rho_x = np.mean(residuals[:, :, 1:] * residuals[:, :, :-1]) / var
  return float(rho_y), float(rho_x)


def flat_regions_nps(residuals: np.ndarray, bins: int = 32
                     ) -> Dict[str, list]:
  """The report's radially averaged NPS (0-255 scale, per unit frequency^2
  in cycles/px) of zero-mean regions [N, H, W], as JSON-able lists
  (`xdn.metrics.image_quality.radial_nps` of the mean of |FFT|^2 / (H W),
  whose mean over the frequency grid is the variance). Bins holding no
  frequency of the grid are left out.
  """
  nps = image_quality.nps_of_rois(np.asarray(residuals) * 255.0)
  freq, power = image_quality.radial_nps(nps, bins)
  keep = np.isfinite(power)
  return {'frequency_cycles_per_pixel': freq[keep].tolist(),
          'nps': power[keep].tolist(),
          'variance_from_nps': float(nps.mean())}


def report(image: np.ndarray, pixel_spacing_mm: Optional[float] = None
           ) -> Dict[str, Any]:
  """The noise report of one [H, W] image in [0, 1] (a JSON-able dict)."""
  image = np.asarray(image, np.float32)
  estimate = noise_estimation.estimate_noise(image)
  xs, stds, counts = noise_estimation.noise_by_intensity(image)
  regions = flat_regions(image)
  flat_rho = neighbour_correlations(regions.residuals)
  nps = flat_regions_nps(regions.residuals)
  out = {
      'shape': list(image.shape),
      'estimate': {
          'description': estimate.describe(), 'kind': estimate.kind,
          'a': estimate.a, 'b': estimate.b,
          'sigma_at_median': 255.0 * float(np.sqrt(
              estimate.a * float(np.median(image)) + estimate.b)),
          'rho_y': estimate.rho_y, 'rho_x': estimate.rho_x,
          'correlation': estimate.correlation},
      'std_by_intensity': {
          'intensity': xs.tolist(), 'std': (255.0 * stds).tolist(),
          'blocks': counts.tolist()},
      'flat_regions': {
          'count': len(regions.corners), 'size': REGION,
          'std': 255.0 * float(np.std(regions.residuals)),
          'rho_y': flat_rho[0], 'rho_x': flat_rho[1],
          'mean_intensity': float(np.mean([
              image[y:y + REGION, x:x + REGION].mean()
              for y, x in regions.corners]))},
      'nps': nps,
  }
  if pixel_spacing_mm:
    out['nps']['pixel_spacing_mm'] = pixel_spacing_mm
    out['nps']['frequency_cycles_per_mm'] = [
        f / pixel_spacing_mm for f in nps['frequency_cycles_per_pixel']]
  return out


def after_report(before: np.ndarray, after: np.ndarray) -> Dict[str, Any]:
  """The after side: `after` (a denoised copy of `before`, both [H, W] in
  [0, 1]) measured in the flat regions of `before`."""
  before = np.asarray(before, np.float64)
  after = np.asarray(after, np.float64)
  if before.shape != after.shape:
    raise errors.UserError(f'the denoised image is {after.shape[0]}x'
                           f'{after.shape[1]}, the input {before.shape[0]}x'
                           f'{before.shape[1]}; give the denoised copy of '
                           'this input')
  regions = flat_regions(before)
  crop = lambda x: np.stack([
      image_quality.detrend_quadratic(x[y:y + REGION, c:c + REGION])
      for y, c in regions.corners])
  sides = {'before': regions.residuals, 'after': crop(after),
           'removed': crop(before - after)}
  nps = {k: image_quality.nps_of_rois(255.0 * v) for k, v in sides.items()}
  stats = {k: image_quality.nps_frequencies(v) for k, v in nps.items()}
  curves = {k: image_quality.radial_nps(v, AFTER_BINS) for k, v in nps.items()}
  keep = np.isfinite(curves['before'][1])
  b, a = stats['before'], stats['after']
  return {
      'flat_std_before': float(np.std(sides['before']) * 255),
      'flat_std_after': float(np.std(sides['after']) * 255),
      'flat_std_removed': float(np.std(sides['removed']) * 255),
      'std_ratio': float(np.std(sides['after']) /
                         max(np.std(sides['before']), 1e-20)),
      'nps_mean_frequency_before': b['mean_frequency'],
      'nps_mean_frequency_after': a['mean_frequency'],
      'nps_mean_frequency_shift': a['mean_frequency'] / b['mean_frequency']
                                  - 1,
      'nps_peak_frequency_before': b['peak_frequency'],
      'nps_peak_frequency_after': a['peak_frequency'],
      'nps_shape_rmsd': image_quality.nps_shape_rmsd(curves['before'][1],
                                                     curves['after'][1]),
      'nps_curves': {'frequency_cycles_per_pixel':
                         curves['before'][0][keep].tolist(),
                     **{k: c[1][keep].tolist() for k, c in curves.items()}},
      **denoising_check(before, after),
  }


def denoising_check(before: np.ndarray, after: np.ndarray,
                    block: int = 32) -> Dict[str, float]:
  """How much of a real image's fine-scale noise a denoiser removed, with
  no clean image: in the flattest quarter of the input's 32x32 blocks, the
  std of the high-pass (image minus its sigma-2-px blur) after over before;
  and the low-pass (sigma 4 px) PSNR of after against before over the
  input's display window (1st-99th percentile), which must stay high: a
  denoiser must not shift the image.
  """
  before = np.asarray(before, np.float64)
  after = np.asarray(after, np.float64)
  corners = blocks_flattest(before, block)
  high = lambda x: x - gaussian_blur(x, 2.0)
  hb, ha = high(before), high(after)
  pick = lambda x: np.concatenate([x[y:y + block, c:c + block].ravel()
                                   for y, c in corners])
  kept = float(np.std(pick(ha)) / max(np.std(pick(hb)), 1e-20))
  lo, hi = np.percentile(before, [1, 99])
  mse = np.mean((gaussian_blur(after, 4.0) - gaussian_blur(before, 4.0))**2)
  return {'fine_noise_kept': kept,
          'lowpass_psnr_db': float(10 * np.log10((hi - lo)**2 /
                                                 max(mse, 1e-20))),
          'blocks': len(corners)}


def plot(result: Dict[str, Any], path: str, title: str = '') -> None:
  """The report's figure: std against intensity, and the radial NPS (with
  the denoised image's beside it when the report has the after side)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  by = result['std_by_intensity']
  est = result['estimate']
  left.plot(by['intensity'], by['std'], 'o', label='per intensity bin')
  x = np.linspace(min(by['intensity'] or [0]), max(by['intensity'] or [1]),
                  50)
  left.plot(x, 255 * np.sqrt(np.maximum(est['a'] * x + est['b'], 0)), '-',
            label='fitted law (told to the model)')
  flat = result['flat_regions']
  left.plot([flat['mean_intensity']], [flat['std']], 's',
            label='flat regions (detrended)')
  left.set_xlabel('intensity [0, 1]')
  left.set_ylabel('noise std (0-255 scale)')
  left.set_ylim(bottom=0)
  left.legend(fontsize=8)
  flat_rho = np.mean([flat['rho_y'], flat['rho_x']])
  left.set_title(f"neighbour correlation {est['correlation']:.2f} "
                 f'(flat regions {flat_rho:.2f})', fontsize=9)
  nps = result['nps']
  right.semilogy(nps['frequency_cycles_per_pixel'], nps['nps'], '.-',
                 label='input')
  after = result.get('after')
  if after:
    curves = after['nps_curves']
    for key, style in (('after', 's-'), ('removed', ':')):
      right.semilogy(curves['frequency_cycles_per_pixel'], curves[key],
                     style, label={'after': 'denoised',
                                   'removed': 'removed (input - denoised)'
                                   }[key])
    right.legend(fontsize=8)
    left.plot([flat['mean_intensity']], [after['flat_std_after']], 'D',
              label='flat regions, denoised')
    left.legend(fontsize=8)
  right.set_xlabel('spatial frequency (cycles / pixel)')
  right.set_ylabel('NPS ((0-255)^2 px^2)')
  right.set_title('radial noise power spectrum, flat regions' + (
      f"; mean f {after['nps_mean_frequency_shift']:+.0%} after"
      if after else ''), fontsize=9)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  atomic.save_figure(fig, path, dpi=110)
  plt.close(fig)


def write(path: str, out_dir: str, after: Optional[Any] = None
          ) -> Dict[str, Any]:
  """Reads a radiograph file and writes its report (JSON and PNG) into
  `out_dir` (created); with `after` (the denoised file's path, or its
  [H, W] pixels) the after side too."""
  from xdn.io import radiographs as radiograph_io  # pylint: disable=g-import-not-at-top
  radiograph = radiograph_io.read_radiograph(path)
  result = report(radiograph.pixels, radiograph_io.pixel_spacing_mm(path))
  result['file'] = os.path.basename(path)
  if after is not None:
    if isinstance(after, str):
      result['after_file'] = os.path.basename(after)
      after = radiograph_io.read_radiograph(after).pixels
    result['after'] = after_report(radiograph.pixels, after)
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
  atomic.write_json(result, stem + '_noise.json', indent=1)
  plot(result, stem + '_noise.png', os.path.basename(path))
  return result
