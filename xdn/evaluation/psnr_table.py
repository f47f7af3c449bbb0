"""The PSNR / SSIM table: every model and baseline on every noise setting.

Every method sees the same noisy images (`xdn.evaluation.settings`). The
results are `eval_results.md` (rows: noise settings, columns: methods,
cells `PSNR / SSIM`, the best of each in bold), `eval_results.csv` and
`eval_results.json` (means and stds over images) and `eval_figure.png`
(clean | noisy | each method on one test image, PSNR in the titles).
"""

import csv
import dataclasses
import functools
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import jax.numpy as jnp
import numpy as np

from xdn.evaluation import baselines
from xdn.evaluation import cache
from xdn.evaluation import methods as methods_lib
from xdn.evaluation import settings as settings_lib
from xdn.io import atomic
from xdn.metrics import similarity as metrics
from xdn.noise import estimation as noise_estimation
from xdn.noise import synthetic as noise

Setting = settings_lib.Setting
RESULT_FILES = ('eval_results.md', 'eval_results.csv', 'eval_results.json',
                'eval_figure.png')


@dataclasses.dataclass
class Evaluation:
  """Scores per (setting, method), and the figure's images."""
  settings: List[Setting]
  methods: List[str]  # Column names, in order.
  rows: List[Dict[str, Any]]  # One per (setting, method).
  figure: Dict[str, np.ndarray]  # Method -> its output on the figure image.
  figure_setting: Setting


def _metrics(denoised: np.ndarray, clean: np.ndarray):
  return (np.asarray(metrics.psnr(jnp.asarray(denoised), jnp.asarray(clean))),
          np.asarray(metrics.ssim(jnp.asarray(denoised), jnp.asarray(clean))))


def _summary(psnr: np.ndarray, ssim: np.ndarray) -> Dict[str, Any]:
  return {'psnr': float(psnr.mean()), 'ssim': float(ssim.mean()),
          'psnr_std': float(psnr.std()), 'ssim_std': float(ssim.std()),
          'psnr_per_image': psnr, 'num_images': len(psnr)}


def _scores(denoised: np.ndarray, clean: np.ndarray) -> Dict[str, Any]:
  return _summary(*_metrics(denoised, clean))


def _scores_per_image(denoised: Sequence[np.ndarray],
                      clean: Sequence[np.ndarray]) -> Dict[str, Any]:
  per = [_metrics(d[None], c[None]) for d, c in zip(denoised, clean)]
  return _summary(np.concatenate([p[0] for p in per]),
                  np.concatenate([p[1] for p in per]))


def evaluate(clean, settings: Sequence[Setting],
             models: Dict[str, Any], baseline_names: Sequence[str], *,
             seed: int = 0, read_noise: float = noise.DEFAULT_READ_NOISE,
             pool=None,
             figure_setting: Optional[Setting] = None,
             figure_image: int = 0, cache_dir: str = '',
             oracle_noise: bool = False) -> Evaluation:
  """Scores every model and baseline on `clean` per setting.

  `clean`: [N, S, S, 1] in [0, 1], or a list of [H, W, 1] of any sizes
  (denoised one by one). `models` maps column names to denoisers
  ([B, H, W, 1] -> same, in [0, 1]); `baseline_names` are keys of
  `baselines.BASELINES`, the slow ones kept in `cache_dir` (if any) and
  shared out over `pool` (a `multiprocessing` pool, if any).
  `oracle_noise`: models with a noise-level input are told the true noise
  (else they estimate it, as xdn-denoise does).
  """
  settings = list(settings)
  if figure_setting not in settings:
    figure_setting = settings[0]
  methods = (['noisy input'] * ('noisy' in baseline_names) + list(models) +
             [baselines.DISPLAY_NAMES[b] for b in baseline_names
              if b != 'noisy'])
  rows, figure = [], {}
  total = len(settings) * (len(models) + len(baseline_names))
  done, start = 0, time.time()
  per_image = not isinstance(clean, np.ndarray)
  for setting in settings:
    if per_image:  # Images of several sizes: one at a time.
      noisy = [settings_lib.noisy_image(c, setting, seed, i, read_noise)
               for i, c in enumerate(clean)]
    else:
      noisy = settings_lib.noisy_images(clean, setting, seed, read_noise)
    outputs = {}
    told = None  # Only models with a noise-level input use it.
    if oracle_noise and (setting.kind in noise.AFFINE_KINDS or
                         setting.kind in noise.CORRELATED_KINDS):
      told = noise_estimation.known_noise(setting.kind, setting.level,
                                          read_noise, setting.correlation)
    for name, denoiser in models.items():
      begin = time.time()
      outputs[name] = ([methods_lib.apply_model(denoiser, n[None], told)[0]
                        for n in noisy] if per_image
                       else methods_lib.apply_model(denoiser, noisy, told))
      logging.info('  %s: %.2fs per image', name,
                   (time.time() - begin) / len(noisy))
    for name in baseline_names:
      begin = time.time()
      apply = functools.partial(baselines.apply_many, name,
                                kind=setting.kind, level=setting.level,
                                read_noise=read_noise,
                                correlation=setting.correlation, pool=pool)
      kept = cache_dir if name in baselines.SLOW else ''  # Others: ms.
      outputs[baselines.DISPLAY_NAMES[name]] = (
          cache.cached_per_image(kept, apply, name, noisy) if per_image
          else cache.cached(kept, apply, name, noisy))
      if name in baselines.SLOW:
        logging.info('  %s: %.2fs per image', name,
                     (time.time() - begin) / len(noisy))
    for method in methods:
      scores = (_scores_per_image(outputs[method], clean) if per_image else
                _scores(outputs[method], clean))
      rows.append({'setting': setting.label, 'kind': setting.kind,
                   'level': setting.level,
                   'correlation': setting.correlation, 'method': method,
                   **scores})
      done += 1
    if setting == figure_setting:
      figure = {'clean': clean[figure_image][..., 0],
                'noisy': noisy[figure_image][..., 0],
                **{m: outputs[m][figure_image][..., 0] for m in methods}}
    elapsed = time.time() - start
    logging.info('%-34s done in %.0fs (ETA %.0fs)', setting.label, elapsed,
                 elapsed / done * (total - done))
  return Evaluation(settings, methods, rows, figure, figure_setting)


# ----------------------------------------------------------------- outputs


def markdown_table(evaluation: Evaluation) -> str:
  """Rows: settings; columns: methods; `PSNR / SSIM`, best of each bold."""
  by_key = {(r['setting'], r['method']): r for r in evaluation.rows}
  header = ['noise'] + evaluation.methods
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + [':---:'] * len(evaluation.methods)) + '|']
  for setting in evaluation.settings:
    cells = [by_key[(setting.label, m)] for m in evaluation.methods]
    best_psnr = max(round(c['psnr'], 2) for c in cells)
    best_ssim = max(round(c['ssim'], 3) for c in cells)
    row = [setting.label]
    for c in cells:
      psnr, ssim = f'{c["psnr"]:.2f}', f'{c["ssim"]:.3f}'
      if round(c['psnr'], 2) == best_psnr:
        psnr = f'**{psnr}**'
      if round(c['ssim'], 3) == best_ssim:
        ssim = f'**{ssim}**'
      row.append(f'{psnr} / {ssim}')
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines) + '\n'


_CSV_FIELDS = ('setting', 'kind', 'level', 'correlation', 'method', 'psnr',
               'ssim', 'psnr_std', 'ssim_std', 'num_images')
_JSON_FIELDS = _CSV_FIELDS + ('psnr_per_image',)


def write_results(out_dir: str, evaluation: Evaluation,
                  meta: Dict[str, Any]) -> str:
  """Writes the Markdown, CSV and JSON results; returns the Markdown table.

  `meta` (what was evaluated: data, split, num_images, seed, ...) heads the
  JSON; its `noise_told_to_models` is said in the Markdown.
  """
  table = markdown_table(evaluation)
  told = ('models told the true noise level' if meta.get(
      'noise_told_to_models') else 'models estimate the noise level (blind)')
  preamble = (f'PSNR (dB) / SSIM on {meta["num_images"]} images of '
              f'{meta["data"]}:{meta["split"]}, noise seed {meta["seed"]}; '
              f'{told}; best per row in bold.\n\n')
  atomic.write_text(preamble + table, os.path.join(out_dir,
                                                   'eval_results.md'))
  with atomic.open_atomic(os.path.join(out_dir, 'eval_results.csv'), 'w',
                          newline='', encoding='utf-8') as f:
    writer = csv.DictWriter(f, _CSV_FIELDS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(evaluation.rows)
  rows = [{k: (np.round(r[k], 3).tolist() if k == 'psnr_per_image' else r[k])
           for k in _JSON_FIELDS} for r in evaluation.rows]
  atomic.write_json(
      {**meta, 'methods': evaluation.methods,
       'settings': [settings_lib.as_json(s) for s in evaluation.settings],
       'results': rows}, os.path.join(out_dir, 'eval_results.json'),
      indent=2)
  return table


def save_figure(path: str, evaluation: Evaluation, crop: int = 0) -> None:
  """clean | noisy | each method, PSNR in the titles, for one test image.

  Images larger than `crop` (if > 0) show a centre crop at full resolution;
  the PSNR in the titles is that of the whole image.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  panels = evaluation.figure
  clean = panels['clean']
  names = ['clean', 'noisy'] + [m for m in evaluation.methods
                                if m != 'noisy input']
  fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 3.0),
                           squeeze=False)
  h, w = clean.shape
  top = (h - crop) // 2 if 0 < crop < h else 0
  left = (w - crop) // 2 if 0 < crop < w else 0
  window = np.s_[top:top + crop, left:left + crop] if crop > 0 else np.s_[:]
  for ax, name in zip(axes[0], names):
    image = panels[name]
    ax.imshow(image[window], cmap='gray', vmin=0, vmax=1,
              interpolation='nearest')
    if name == 'clean':
      title = 'clean'
    else:
      psnr = float(metrics.psnr(jnp.asarray(image)[None, ..., None],
                                jnp.asarray(clean)[None, ..., None])[0])
      title = f'{name}\n{psnr:.2f} dB'
    ax.set_title(title, fontsize=9)
    ax.axis('off')
  fig.suptitle(evaluation.figure_setting.label, fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 0.9))  # Room for the suptitle.
  atomic.save_figure(fig, path, dpi=120)
  plt.close(fig)
