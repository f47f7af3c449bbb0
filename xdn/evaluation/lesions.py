"""`xdn-evaluate --task=lesions`: lesion fidelity of models and baselines.

For each clean test image, faint round lesions (`xdn.metrics.lesions`, Gaussian
profiles, positive polarity, in the display domain) are placed at random
sites inside the body region, kept 12 lesion widths apart and away from
the border; several sizes share an image. Per noise setting, the image is
corrupted with and without its lesions by the *same* noise draw; every
method (models blind as `xdn-denoise` runs them, baselines told the noise)
denoises both, and `xdn.metrics.observers` gives per size: contrast transfer
(mean and 10th percentile), NPW d' and CHO d'. Each size's contrast is
chosen so that the noisy input's NPW d' is `target_d_prime` (2 by
default: the 1.5-3 range where detection is neither sure nor hopeless).

Writes lesion_results.md / .json and lesion_figure.png (crops of one
lesion: clean | noisy | each method).
"""

import os
import time
from typing import Any, Callable, Dict, List, Sequence

from absl import logging
import numpy as np

from xdn.io import atomic
from xdn.metrics import lesions
from xdn.metrics import observers as task_metrics

ROI_WIDTHS = 8  # ROI side in lesion widths (task_metrics.lesion_figures).


def plan_sites(image: np.ndarray, sizes: Sequence[float], per_size: int,
               rng: np.random.Generator) -> Dict[float, List[tuple]]:
  """Sites per lesion size in one image, all far apart."""
  margin = int(ROI_WIDTHS * max(sizes)) // 2 + 2
  mask = lesions.body_mask(image, margin)
  sites = lesions.place_sites(rng, mask, per_size * len(sizes),
                              12 * max(sizes))
  return {size: sites[i::len(sizes)] for i, size in enumerate(sizes)}


def _unit_lesions(shape, sites_by_size) -> Dict[float, np.ndarray]:
  return {size: lesions.lesion_image(shape, sites, size, 1.0)
          for size, sites in sites_by_size.items()}


def contrast_for_d_prime(noise_rois: np.ndarray, profile: np.ndarray,
                         target: float) -> float:
  """The peak contrast at which the NPW d' on the noisy input is `target`.

  NPW is linear: with template p, d' = c <p, p> / std(<p, n>).
  """
  responses = np.sum(noise_rois * profile, axis=(1, 2))
  return float(target * np.std(responses, ddof=1) / np.sum(profile**2))


def evaluate_lesions(clean: Sequence[np.ndarray], settings: Sequence[Any],
                     methods: Dict[str, Callable[[np.ndarray, Any],
                                                 np.ndarray]],
                     make_noisy: Callable[[np.ndarray, Any, int], np.ndarray],
                     *, sizes: Sequence[float] = (3.0, 5.0, 8.0),
                     per_size: int = 8, target_d_prime: float = 2.0,
                     seed: int = 0,
                     geometry: task_metrics.EyeGeometry = (
                         task_metrics.EyeGeometry())) -> Dict[str, Any]:
  """Lesion-fidelity figures per (setting, size, method).

  `clean`: [H, W] images in [0, 1]; `methods`: name -> (noisy [H, W],
  setting) -> denoised; `make_noisy(image, setting, index)` the setting's
  noise for image `index` (the same draw for any image content);
  `geometry`: how the images are read, for the NPWE observer.
  """
  rng = np.random.default_rng(seed)
  plans = [plan_sites(c, sizes, per_size, rng) for c in clean]
  rows, crops = [], {}
  start = time.time()
  for setting in settings:
    noisy0 = [make_noisy(c, setting, i) for i, c in enumerate(clean)]
    # Contrast per size from the noisy input's noise at the sites.
    contrasts = {}
    for size in sizes:
      roi = int(ROI_WIDTHS * size) | 1
      noise_rois = np.concatenate([
          task_metrics.rois(n - c, plan[size], roi)
          for n, c, plan in zip(noisy0, clean, plans) if plan[size]])
      profile = np.asarray(lesions.lesion_image((roi, roi), [(roi // 2,
                                                              roi // 2)],
                                                size, 1.0))
      contrasts[size] = contrast_for_d_prime(noise_rois, profile,
                                             target_d_prime)
    lesion_maps = []
    for c, plan in zip(clean, plans):
      unit = _unit_lesions(c.shape, plan)
      lesion_maps.append(sum(contrasts[s] * unit[s] for s in sizes))
    noisy1 = [make_noisy(np.clip(c + l, 0, 1), setting, i)
              for i, (c, l) in enumerate(zip(clean, lesion_maps))]
    outputs = {'noisy input': (noisy1, noisy0)}
    for name, method in methods.items():
      began = time.time()
      outputs[name] = ([method(n, setting) for n in noisy1],
                       [method(n, setting) for n in noisy0])
      logging.info('  lesions %s %s: %.1fs per image', setting.label, name,
                   (time.time() - began) / (2 * len(clean)))
    for name, (with_l, without_l) in outputs.items():
      for size in sizes:
        parts = [task_metrics.lesion_figures(c, l, w, wo, plan[size], size)
                 for c, l, w, wo, plan in zip(clean, lesion_maps, with_l,
                                              without_l, plans)
                 if plan[size]]
        summary = task_metrics.summarise(parts, size, geometry)
        rows.append({'setting': setting.label, 'size_px': size,
                     'contrast': contrasts[size], 'method': name, **summary})
    first = next((s for s in sizes if plans[0][s]), None)
    if first is not None and not crops:
      y, x = plans[0][first][0]
      half = int(ROI_WIDTHS * first)
      window = lambda im: np.asarray(im)[max(y - half, 0):y + half,
                                         max(x - half, 0):x + half]
      crops = {'setting': setting.label,
               'clean + lesion': window(np.clip(clean[0] + lesion_maps[0],
                                                0, 1)),
               **{name: window(out[0][0]) for name, out in outputs.items()}}
    logging.info('%s done (%.0fs)', setting.label, time.time() - start)
  return {'rows': rows, 'crops': crops, 'sizes': list(sizes),
          'target_d_prime': target_d_prime}


def markdown(result: Dict[str, Any]) -> str:
  """One table: rows setting x size, per method transfer and d'."""
  lines = ['| noise | lesion std (px) | method | contrast transfer mean / '
           'p10 | NPW d\u2032 | NPWE d\u2032 | CHO d\u2032 | CHO + internal '
           'noise d\u2032 |', '|---|---|---|---|---|---|---|---|']
  for r in result['rows']:
    lines.append(f"| {r['setting']} | {r['size_px']:g} | {r['method']} | "
                 f"{r['transfer_mean']:.2f} / {r['transfer_p10']:.2f} | "
                 f"{r['npw_d_prime']:.2f} | {r['npwe_d_prime']:.2f} | "
                 f"{r['cho_d_prime']:.2f} | "
                 f"{r['cho_internal_d_prime']:.2f} |")
  return '\n'.join(lines) + '\n'


def write(out_dir: str, result: Dict[str, Any], meta: Dict[str, Any]) -> str:
  """lesion_results.md / .json and lesion_figure.png in `out_dir`; returns
  the table."""
  table = markdown(result)
  atomic.write_text(table, os.path.join(out_dir, 'lesion_results.md'))
  atomic.write_json({**meta, 'target_d_prime': result['target_d_prime'],
                     'rows': result['rows']},
                    os.path.join(out_dir, 'lesion_results.json'), indent=1)
  if result['crops']:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    crops = {k: v for k, v in result['crops'].items() if k != 'setting'}
    fig, axes = plt.subplots(1, len(crops), figsize=(2.2 * len(crops), 2.6))
    lo, hi = np.percentile(crops['clean + lesion'], [1, 99])
    for ax, (name, crop) in zip(np.atleast_1d(axes), crops.items()):
      ax.imshow(crop, cmap='gray', vmin=lo, vmax=hi)
      ax.set_title(name, fontsize=8)
      ax.axis('off')
    fig.suptitle(f"lesion at the centre, {result['crops']['setting']}",
                 fontsize=9)
    fig.tight_layout()
    atomic.save_figure(fig, os.path.join(out_dir, 'lesion_figure.png'),
                       dpi=110)
    plt.close(fig)
  return table
