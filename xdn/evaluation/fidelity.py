"""`xdn-evaluate --task=fidelity`: a task-based image-quality report.

What a medical physicist measures of a denoiser (AAPM TG-233, Samei et
al. 2019), on clean radiographs corrupted with synthetic noise, for every
method (each model at each strength level, and the baselines):

  * PSNR / SSIM of the lesion-free output against the clean image;
  * noise magnitude: the std of the output's noise, from two noise
    realisations of the same image, (D(x + n1) - D(x + n2)) / sqrt(2),
    against the input's;
  * its noise power spectrum (`xdn.metrics.image_quality`): peak and mean
    frequency, and the NPS-shape RMSD against the input noise's (0: the
    same grain; the "waxy" look of over-smoothed images is a shape moved
    to low frequencies);
  * the task transfer function from inserted discs at a low and a high
    contrast-to-noise ratio (nonlinear denoisers blur faint edges more than
    strong ones): its 50 % and 10 % frequencies;
  * faint round lesions of several sizes (`xdn.metrics.lesions`), each size
    at the contrast where the noisy input's NPW d' is `target_d_prime`:
    contrast transfer (mean, 10th percentile), and the d' of four model
    observers over the input's: NPW, NPWE (the eye filter of a reader at
    the stated viewing geometry), CHO, and CHO with internal noise
    (`xdn.metrics.observers`; the last two track human readers best).

Per image and setting each method runs four times: on x + n1 (the scored
output), x + n2 (the second realisation), x + lesions + low-contrast discs
+ n1 and x + high-contrast discs + n1; the signals are the differences
with the first, under the same noise draw. Sites are far apart (12 lesion
widths, 4 disc radii), inside the body, and the same for every method.
"""

import os
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from absl import logging
import numpy as np

from xdn.evaluation import lesions as lesion_eval
from xdn.io import atomic
from xdn.metrics import image_quality
from xdn.metrics import lesions
from xdn.metrics import observers as task_metrics

# The model observers reported, each as its d' over the noisy input's.
OBSERVERS = ('npw', 'npwe', 'cho', 'cho_internal')
# The key index of the second noise realisation of image i is i + SECOND.
SECOND = 1 << 20
NPS_ROI = 64
# Radial bins of the NPS: 1/32 cycles/px wide, so each holds frequencies of a
# 64-px ROI's grid.
NPS_BINS = 16


def plan_image(image: np.ndarray, sizes: Sequence[float], per_size: int,
               discs: int, disc_radius: float, rng: np.random.Generator
               ) -> Dict[str, Any]:
  """Lesion sites per size and disc sites (low, high contrast), far apart."""
  spacing = max(12 * max(sizes), 4 * disc_radius)
  margin = int(max(lesion_eval.ROI_WIDTHS * max(sizes) / 2,
                   2.5 * disc_radius)) + 2
  mask = lesions.body_mask(image, margin)
  count = per_size * len(sizes) + discs
  sites = lesions.place_sites(rng, mask, count, spacing)
  lesion_sites = sites[:per_size * len(sizes)]
  disc_sites = sites[per_size * len(sizes):]
  return {'lesions': {s: lesion_sites[i::len(sizes)]
                      for i, s in enumerate(sizes)},
          'discs_low': disc_sites[0::2], 'discs_high': disc_sites[1::2]}


def _discs(shape, sites, radius, contrast) -> np.ndarray:
  out = np.zeros(shape, np.float64)
  for site in sites:
    out += image_quality.disc_image(shape, site, radius, contrast)
  return out


def evaluate_fidelity(clean: Sequence[np.ndarray], settings: Sequence[Any],
                      methods: Dict[str, Callable[[np.ndarray, Any],
                                                  np.ndarray]],
                      make_noisy: Callable[[np.ndarray, Any, int], np.ndarray],
                      *, sizes: Sequence[float] = (3.0, 5.0, 8.0),
                      per_size: int = 8, discs: int = 8,
                      disc_radius: float = 12.0,
                      cnr: Tuple[float, float] = (0.5, 5.0),
                      target_d_prime: float = 2.0, seed: int = 0,
                      full: bool = True,
                      geometry: task_metrics.EyeGeometry = (
                          task_metrics.EyeGeometry())) -> Dict[str, Any]:
  """The report's figures per (setting, method); see the module docstring.

  `clean`: [H, W] images in [0, 1]; `methods`: name -> (noisy, setting) ->
  denoised; `make_noisy(image, setting, key_index)` the setting's noise
  draw `key_index` (the same draw for any image content). `cnr`: the discs'
  contrast over the input noise std (low, high). `full=False` measures
  PSNR / SSIM and the lesions only (two runs per image; calibration).
  `geometry`: how the images are read, for the NPWE observer.
  """
  from xdn.metrics import similarity as metrics  # pylint: disable=g-import-not-at-top  # JAX.
  rng = np.random.default_rng(seed)
  plans = [plan_image(c, sizes, per_size, discs, disc_radius, rng)
           for c in clean]
  masks = [lesions.body_mask(c, 0) for c in clean]
  all_methods = {'noisy input': lambda n, s: n, **methods}
  rows, curves = [], {}
  start = time.time()
  for setting in settings:
    noisy1 = [make_noisy(c, setting, i) for i, c in enumerate(clean)]
    sigma = float(np.sqrt(np.mean([np.mean((n - c)[m]**2) for n, c, m in
                                   zip(noisy1, clean, masks)])))
    contrasts = {}
    for size in sizes:
      roi = int(lesion_eval.ROI_WIDTHS * size) | 1
      noise_rois = np.concatenate([
          task_metrics.rois(n - c, p['lesions'][size], roi)
          for n, c, p in zip(noisy1, clean, plans) if p['lesions'][size]])
      profile = lesions.lesion_image((roi, roi), [(roi // 2, roi // 2)],
                                     size, 1.0)
      contrasts[size] = lesion_eval.contrast_for_d_prime(
          noise_rois, profile, target_d_prime)
    lesion_maps = [sum(lesions.lesion_image(c.shape, p['lesions'][s], s,
                                            contrasts[s]) for s in sizes)
                   for c, p in zip(clean, plans)]
    low = [_discs(c.shape, p['discs_low'], disc_radius, cnr[0] * sigma)
           for c, p in zip(clean, plans)]
    high = [_discs(c.shape, p['discs_high'], disc_radius, cnr[1] * sigma)
            for c, p in zip(clean, plans)]
    signal_inputs = [make_noisy(np.clip(c + l + d, 0, 1), setting, i)
                     for i, (c, l, d) in enumerate(zip(clean, lesion_maps,
                                                       low))]
    if full:
      noisy2 = [make_noisy(c, setting, i + SECOND)
                for i, c in enumerate(clean)]
      high_inputs = [make_noisy(np.clip(c + d, 0, 1), setting, i)
                     for i, (c, d) in enumerate(zip(clean, high))]
    reference_nps = None
    for name, method in all_methods.items():
      began = time.time()
      out1 = [np.asarray(method(n, setting), np.float64) for n in noisy1]
      out_signal = [np.asarray(method(n, setting), np.float64)
                    for n in signal_inputs]
      row = {'setting': setting.label, 'method': name,
             **_psnr_ssim(metrics, out1, clean)}
      for size in sizes:
        parts = [task_metrics.lesion_figures(c, l, w, wo, p['lesions'][size],
                                             size)
                 for c, l, w, wo, p in zip(clean, lesion_maps, out_signal,
                                           out1, plans) if p['lesions'][size]]
        summary = task_metrics.summarise(parts, size, geometry)
        for key, value in summary.items():
          row[f'{key}_{size:g}px'] = value
      if full:
        out2 = [np.asarray(method(n, setting), np.float64) for n in noisy2]
        out_high = [np.asarray(method(n, setting), np.float64)
                    for n in high_inputs]
        noise = [image_quality.noise_from_pair(a, b)
                 for a, b in zip(out1, out2)]
        nps = image_quality.nps_2d(noise, NPS_ROI, _nps_masks(masks))
        freq, radial = image_quality.radial_nps(nps, NPS_BINS)
        if reference_nps is None:  # The noisy input comes first.
          reference_nps = (nps, radial)
        stats = image_quality.nps_frequencies(nps)
        ref_stats = image_quality.nps_frequencies(reference_nps[0])
        row.update({
            'noise_std': 255 * stats['std'],
            'noise_std_ratio': stats['std'] / ref_stats['std'],
            'nps_mean_frequency': stats['mean_frequency'],
            'nps_mean_frequency_ratio': (stats['mean_frequency'] /
                                         ref_stats['mean_frequency']),
            'nps_peak_frequency': stats['peak_frequency'],
            'nps_shape_rmsd': image_quality.nps_shape_rmsd(
                reference_nps[1], radial)})
        ttfs = {}
        for label, outs, discs_in, key in (
            ('low', out_signal, low, 'discs_low'),
            ('high', out_high, high, 'discs_high')):
          centres = [s for p in plans for s in p[key]]
          if not centres:  # The lesions left no room for a disc.
            row[f'ttf_{label}_f50'] = row[f'ttf_{label}_f10'] = float('nan')
            ttfs[label] = ([], [])
            continue
          measured = [o - a for o, a in zip(outs, out1)]
          owners = [i for i, p in enumerate(plans) for _ in p[key]]
          result = image_quality.ttf(
              [measured[i] for i in owners], [discs_in[i] for i in owners],
              centres, disc_radius)
          row[f'ttf_{label}_f50'] = float(result['f50'])
          row[f'ttf_{label}_f10'] = float(result['f10'])
          kept = np.isfinite(result['ttf'])
          ttfs[label] = (result['frequency'][kept][::8].tolist(),
                         result['ttf'][kept][::8].tolist())
        kept = np.isfinite(radial)
        curves[(setting.label, name)] = {
            'nps_frequency': freq[kept].tolist(),
            'nps': (255**2 * radial[kept]).tolist(), 'ttf': ttfs}
      rows.append(row)
      logging.info('  fidelity %s %s: %.1fs per image', setting.label, name,
                   (time.time() - began) / len(clean))
    _add_ratios(rows, setting.label, sizes)
    logging.info('%s done (%.0fs)', setting.label, time.time() - start)
  return {'rows': rows, 'curves': curves, 'sizes': list(sizes),
          'target_d_prime': target_d_prime, 'cnr': list(cnr),
          'disc_radius': disc_radius}


def _nps_masks(masks: Sequence[np.ndarray]) -> List[np.ndarray]:
  return [np.asarray(m, bool) for m in masks]


def _psnr_ssim(metrics, outputs, clean) -> Dict[str, float]:
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  psnr, ssim = [], []
  for o, c in zip(outputs, clean):
    a = jnp.asarray(np.clip(o, 0, 1)[None, ..., None], jnp.float32)
    b = jnp.asarray(c[None, ..., None], jnp.float32)
    psnr.append(float(metrics.psnr(a, b)[0]))
    ssim.append(float(metrics.ssim(a, b)[0]))
  return {'psnr': float(np.mean(psnr)), 'ssim': float(np.mean(ssim))}


def _add_ratios(rows: List[Dict[str, Any]], setting: str,
                sizes: Sequence[float]) -> None:
  """Each method's d' over the noisy input's, per size and on average."""
  mine = [r for r in rows if r['setting'] == setting]
  ref = next(r for r in mine if r['method'] == 'noisy input')
  for row in mine:
    for observer in OBSERVERS:
      ratios = [row[f'{observer}_d_prime_{s:g}px'] /
                max(ref[f'{observer}_d_prime_{s:g}px'], 1e-12)
                for s in sizes]
      for s, value in zip(sizes, ratios):
        row[f'{observer}_ratio_{s:g}px'] = value
      row[f'{observer}_ratio'] = float(np.mean(ratios))
    row['transfer_mean'] = float(np.mean(
        [row[f'transfer_mean_{s:g}px'] for s in sizes]))
    row['transfer_p10'] = float(np.mean(
        [row[f'transfer_p10_{s:g}px'] for s in sizes]))


# ----------------------------------------------------------------- outputs


def markdown(result: Dict[str, Any]) -> str:
  """The summary table: one row per (setting, method)."""
  full = 'noise_std' in result['rows'][0]
  head = ['noise', 'method', 'PSNR / SSIM', 'transfer mean / p10',
          "NPW d′ ratio", "NPWE d′ ratio", "CHO d′ ratio",
          "CHO + internal noise d′ ratio"]
  if full:
    head += ['noise std (ratio)', 'NPS mean f (ratio)', 'NPS shape RMSD',
             'TTF f50 low / high']
  lines = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join(['---'] * len(head)) + '|']
  for r in result['rows']:
    cells = [r['setting'], r['method'], f"{r['psnr']:.2f} / {r['ssim']:.3f}",
             f"{r['transfer_mean']:.2f} / {r['transfer_p10']:.2f}",
             *(f"{r[f'{o}_ratio']:.2f}" for o in OBSERVERS)]
    if full:
      cells += [f"{r['noise_std']:.2f} ({r['noise_std_ratio']:.2f})",
                f"{r['nps_mean_frequency']:.3f} "
                f"({r['nps_mean_frequency_ratio']:.2f})",
                f"{r['nps_shape_rmsd']:.2f}",
                f"{r['ttf_low_f50']:.3f} / {r['ttf_high_f50']:.3f}"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def write(out_dir: str, result: Dict[str, Any], meta: Dict[str, Any]) -> str:
  """fidelity_results.md / .json, fidelity_frontier.png and, for the full
  report, fidelity_nps.png; returns the table."""
  table = markdown(result)
  atomic.write_text(table, os.path.join(out_dir, 'fidelity_results.md'))
  curves = {f'{s} | {m}': v for (s, m), v in result['curves'].items()}
  atomic.write_json({**meta, **{k: v for k, v in result.items()
                                if k != 'curves'}, 'curves': curves},
                    os.path.join(out_dir, 'fidelity_results.json'), indent=1)
  plot_frontier(result, os.path.join(out_dir, 'fidelity_frontier.png'))
  if result['curves']:
    plot_nps(result, os.path.join(out_dir, 'fidelity_nps.png'))
  return table


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _family(method: str) -> str:
  """'xdn-pretrained (medium)' -> 'xdn-pretrained': a model's levels share
  one curve of the frontier."""
  return method.split(' (')[0]


def _kept(row: Dict[str, Any]) -> float:
  """The detectability a level is judged by: the lower observer's d' over
  the input's (NPW alone can exceed 1 where clipping hurts the input)."""
  return min(row['npw_ratio'], row['cho_ratio'])


def plot_frontier(result: Dict[str, Any], path: str) -> None:
  """d' over the input's (the lower of NPW and CHO) against PSNR, one
  panel per setting; a model's strength levels joined in one curve (the
  fidelity frontier)."""
  plt = _plt()
  settings = list(dict.fromkeys(r['setting'] for r in result['rows']))
  cols = min(3, len(settings))
  rows_ = -(-len(settings) // cols)
  fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.6 * rows_),
                           squeeze=False)
  for ax in axes.ravel()[len(settings):]:
    ax.axis('off')
  for ax, setting in zip(axes.ravel(), settings):
    rows = [r for r in result['rows'] if r['setting'] == setting]
    families: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
      families.setdefault(_family(r['method']), []).append(r)
    for family, members in families.items():
      members = sorted(members, key=lambda r: r['psnr'])
      ax.plot([r['psnr'] for r in members], [_kept(r) for r in members],
              'o-' if len(members) > 1 else 's', label=family)
      for r in members:
        if '(' in r['method']:
          ax.annotate(r['method'].split(' (')[1].rstrip(')'),
                      (r['psnr'], _kept(r)), fontsize=7,
                      textcoords='offset points', xytext=(3, 3))
    ax.axhline(0.95, color='grey', lw=0.8, ls='--')
    ax.set_xlabel('PSNR (dB), lesion-free image')
    ax.set_ylabel("d′ / noisy input's (min of NPW, CHO)")
    ax.set_title(setting, fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  atomic.save_figure(fig, path, dpi=110)
  plt.close(fig)


def plot_nps(result: Dict[str, Any], path: str) -> None:
  """Radial NPS of each method's output noise (first setting): absolute,
  and peak-normalised (the texture)."""
  plt = _plt()
  first = result['rows'][0]['setting']
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  for (setting, method), curve in result['curves'].items():
    if setting != first:
      continue
    f, nps = np.asarray(curve['nps_frequency']), np.asarray(curve['nps'])
    left.semilogy(f, nps, label=method)
    right.plot(f, nps / max(nps.max(), 1e-20), label=method)
  left.set_ylabel('NPS ((0-255)² px²)')
  left.set_ylim(bottom=max(left.get_ylim()[0], 1e-3))
  right.set_ylabel('NPS / its peak (shape)')
  for ax in (left, right):
    ax.set_xlabel('spatial frequency (cycles / pixel)')
    ax.legend(fontsize=7)
  fig.suptitle(f'noise power spectrum of the output noise, {first}',
               fontsize=10)
  fig.tight_layout()
  atomic.save_figure(fig, path, dpi=110)
  plt.close(fig)
