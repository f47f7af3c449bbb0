"""PSNR / SSIM of trained models and classical baselines on the test split.

  python -m xdn.cli.evaluate --workdir=runs/ae,runs/vae,runs/unet [--skip_slow]
  xdn-evaluate --workdir=runs/unet --num_images=50 --out=reports/unet

Every method sees the same test images with the same noise: for each setting
(kind, level) the noise key is `--seed` folded with the kind's index in
`xdn.noise.synthetic.NOISE_KINDS` and the level (in thousandths), so a setting's noisy
images do not depend on which other settings are in the grid. Noisy images
are clipped to [0, 1] as a detector saturates.

Writes to `--out` (default: the first workdir) `eval_results.md` (rows: noise
settings, columns: methods, cells `PSNR / SSIM`, the best of each in bold;
also printed), `eval_results.csv` and `eval_results.json` (means and stds
over images), and `eval_figure.png` (clean | noisy | each method on one test
image, PSNR in the titles).
"""

import csv
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from xdn.evaluation import baselines
from xdn import errors
from xdn.inference import denoiser as inference
from xdn.metrics import similarity as metrics
from xdn.noise import synthetic as noise
from xdn.noise import estimation as noise_estimation
from xdn.io import radiographs as radiograph_io

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined on use so importing this module adds none."""
  flags.DEFINE_multi_string(
      'workdir', [], 'Training workdir(s) whose best checkpoint to '
      "evaluate; comma-separated or repeated; 'pretrained' is the model "
      'shipped with xdn. None: baselines only (then --out and --config or '
      '--folder are needed).')
  flags.DEFINE_bool('pretrained', False, 'Add the model shipped with xdn as '
                    'a column.')
  flags.DEFINE_string('folder', None, 'Evaluate on a folder of radiographs '
                      '(PNG/JPEG/TIFF/DICOM, any size, denoised whole or '
                      'in tiles) instead of a TFDS split: its --split '
                      "('train', 'validation', 'test' by patient as in "
                      "training, or 'all').")
  config_flags.DEFINE_config_file(
      'config', None, 'Optional config file whose `data` section chooses the '
      'test images (default: the first workdir\'s saved config).',
      lock_config=False)
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir override (where '
                      'chest_xray_sample is built or found).')
  flags.DEFINE_string('split_fractions', '0.8,0.1,0.1', 'Patient split '
                      'fractions of a --folder (as data.split_fractions).')
  flags.DEFINE_string('split', None, 'Split to evaluate on (default: the '
                      'config\'s data.test_split).')
  flags.DEFINE_string('out', None, 'Folder for the results (default: the '
                      'first workdir).')
  flags.DEFINE_integer('num_images', 0, 'Evaluate at most this many images '
                       '(0: the whole split).')
  flags.DEFINE_list('settings', None, 'Noise settings, each KIND:LEVEL (e.g. '
                    'gaussian:25, poisson:50), KIND:LEVEL,CORRELATION for '
                    'the correlated kinds (correlated_gaussian:25,0.37: '
                    'pixel std and neighbour correlation; xray:400,0.68: '
                    'quanta per pixel unattenuated and the detector '
                    'correlation) or a preset name (e.g. gaussian_medium). '
                    'Default: the standard grid.')
  flags.DEFINE_list('baselines', list(baselines.BASELINES),
                    f'Baselines to run, from {list(baselines.BASELINES)}.')
  flags.DEFINE_bool('skip_slow', False, 'Leave out the slow baselines '
                    f'({", ".join(baselines.SLOW)}).')
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_bool('oracle_noise', False, 'Tell models with a noise-level '
                    'input the true level (default: they estimate it, blind, '
                    'as xdn-denoise does).')
  flags.DEFINE_string('cache', '', 'Folder that keeps the baselines\' '
                      'outputs (keyed by the noisy images), so reruns skip '
                      'them.')
  flags.DEFINE_float('read_noise', noise.DEFAULT_READ_NOISE,
                     'poisson_gaussian read-noise sigma '
                     '(0-255 scale).')
  flags.DEFINE_integer('processes', os.cpu_count() or 1, 'Worker processes '
                       'for the slow baselines (1: none).')
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                    'Which checkpoint of each workdir to use.')
  flags.DEFINE_string('figure_setting', 'gaussian:25', 'Noise setting shown '
                      'in the figure (the first setting if not in the grid).')
  flags.DEFINE_integer('figure_image', 0, 'Index of the test image in the '
                       'figure.')
  flags.DEFINE_enum('precision', 'float32', list(inference.PRECISIONS),
                    "Models' compute precision ('auto' as xdn-denoise).")
  flags.DEFINE_enum('task', 'denoise', ['denoise', 'lesions', 'fidelity',
                                        'calibrate'],
                    "'denoise': PSNR / SSIM per setting; 'lesions': lesion "
                    'fidelity (contrast transfer, NPW and CHO d\'; see '
                    "xdn.evaluation.lesions) of faint inserted lesions; 'fidelity': "
                    'the task-based image-quality report (PSNR/SSIM, noise '
                    'std, NPS, TTF, lesions; xdn.evaluation.fidelity) per model, '
                    "strength and baseline; 'calibrate': measure the first "
                    "model's strength levels (xdn.evaluation.calibration) and "
                    'write strength_levels.json to --out (and to a training '
                    'workdir, which then uses them).')
  flags.DEFINE_list('strength', None, 'Strength(s) of the models with a '
                    "noise-level input: levels ('low', 'medium', 'high', "
                    "'full') or factors (e.g. 0.8), each a column. Default: "
                    "each model's default level; for --task=fidelity every "
                    'calibrated level.')
  flags.DEFINE_list('calibration_factors', [str(f) for f in (
                        0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)],
                    '--task=calibrate: the grid of noise factors measured.')
  flags.DEFINE_list('lesion_sizes', ['3', '5', '8'], "--task=lesions: lesion "
                    'Gaussian std in pixels (3-8 px: 3-10 mm nodules at '
                    "NIH's ~0.42 mm pixels).")
  flags.DEFINE_integer('lesions_per_size', 8, '--task=lesions: sites per '
                       'lesion size and image.')
  flags.DEFINE_float('lesion_d_prime', 2.0, "--task=lesions: each size's "
                     "contrast gives the noisy input this NPW d'.")
  flags.DEFINE_integer('figure_crop', 256, 'Larger images are shown as this '
                       'many pixels square around their centre, at full '
                       'resolution (0: whole).')


RESULT_FILES = ('eval_results.md', 'eval_results.csv', 'eval_results.json',
                'eval_figure.png')


@dataclasses.dataclass(frozen=True)
class Setting:
  """One noise setting of the grid."""
  kind: str  # A key of noise.NOISE_KINDS.
  level: float  # In the kind's units (see xdn.noise.synthetic).
  preset: str = ''  # The preset it came from, if any.
  correlation: float = 0.0  # Neighbour correlation (correlated kinds).

  @property
  def label(self) -> str:
    unit = {'gaussian': f'σ={self.level:.4g}',
            'poisson': f'dose={self.level:.4g}',
            'poisson_gaussian': f'dose={self.level:.4g}',
            'salt_and_pepper': f'{self.level:.0%}',
            'speckle': f'σ={self.level:.3g}',
            'none': 'clean',
            'correlated_gaussian': f'σ={self.level:.4g} ρ={self.correlation:.2f}',
            'xray': f'N0={self.level:.4g} ρ={self.correlation:.2f}',
            }[self.kind]
    return f'{self.preset} ({unit})' if self.preset else f'{self.kind} {unit}'


def join_correlations(items: Sequence[str]) -> List[str]:
  """Re-joins 'correlated_gaussian:25', '0.37' that a comma-separated flag
  split apart: a bare number continues the setting before it."""
  joined: List[str] = []
  for item in items:
    try:
      float(item)
      number = True
    except ValueError:
      number = False
    if number and joined:
      joined[-1] += f',{item.strip()}'
    else:
      joined.append(item)
  return joined


def parse_setting(text: str) -> Setting:
  """'gaussian:25' or a preset name such as 'gaussian_medium'."""
  text = text.strip()
  if text in noise.PRESETS:
    kind, level = noise.PRESETS[text]
    return Setting(kind, float(level), text)
  kind, sep, level = text.partition(':')
  if not sep:
    raise errors.UserError(
        f'noise setting {text!r} (flag --settings) must be KIND:LEVEL, e.g. '
        'gaussian:25, correlated_gaussian:25,0.37 or xray:400,0.68, or one '
        f'of the presets {sorted(noise.PRESETS)}')
  level, _, correlation = level.partition(',')
  try:
    value = float(level)
    rho = float(correlation) if correlation else 0.0
  except ValueError:
    raise errors.UserError(f'noise setting {text!r} (flag --settings): level '
                           f'{level!r} or correlation {correlation!r} is not '
                           'a number') from None
  kind, value = noise.resolve(kind, value)
  if correlation and kind not in noise.CORRELATED_KINDS:
    raise errors.UserError(f'noise setting {text!r}: only '
                           f'{noise.CORRELATED_KINDS} take a correlation')
  if not 0 <= rho <= noise.noise_physics.MAX_CORRELATION:
    raise errors.UserError(f'noise setting {text!r}: the correlation must be '
                           f'in [0, {noise.noise_physics.MAX_CORRELATION}]')
  return Setting(kind, value, correlation=rho)


# Gaussian sigma 15/25/50 and the seed's tiers; Poisson at a moderate and a
# low dose (noise std at mid-gray ~13 and ~25 on the 0-255 scale); the
# seed's salt-and-pepper tiers.
DEFAULT_SETTINGS: Tuple[str, ...] = (
    'gaussian:15', 'gaussian:25', 'gaussian:50',
    'gaussian_easy', 'gaussian_medium', 'gaussian_hard',
    'poisson:200', 'poisson:50',
    'salt_and_pepper_easy', 'salt_and_pepper_medium', 'salt_and_pepper_hard',
)


def noise_key(seed: int, setting: Setting) -> jax.Array:
  """The key of a setting: seed folded with (kind index, level)."""
  kind_index = list(noise.NOISE_KINDS).index(setting.kind)
  key = jax.random.fold_in(jax.random.key(seed), kind_index)
  key = jax.random.fold_in(key, int(round(setting.level * 1000)))
  if setting.correlation:  # White settings keep the keys they always had.
    key = jax.random.fold_in(key, int(round(setting.correlation * 1000)))
  return key


def noisy_images(clean: np.ndarray, setting: Setting, seed: int,
                 read_noise: float = noise.DEFAULT_READ_NOISE) -> np.ndarray:
  """The noisy test images every method of `setting` sees (clipped)."""
  return np.asarray(noise.add_noise(
      noise_key(seed, setting), jnp.asarray(clean, jnp.float32),
      setting.kind, setting.level, clip=True, read_noise=read_noise,
      correlation=setting.correlation))


def noisy_image(clean: np.ndarray, setting: Setting, seed: int, index: int,
                read_noise: float = noise.DEFAULT_READ_NOISE) -> np.ndarray:
  """Image `index` [H, W, 1] of a set of any sizes, with its own noise key."""
  key = jax.random.fold_in(noise_key(seed, setting), index)
  return np.asarray(noise.add_noise(
      key, jnp.asarray(clean, jnp.float32)[None], setting.kind,
      setting.level, clip=True, read_noise=read_noise,
      correlation=setting.correlation))[0]


def _cached(cache_dir: str, fn, name: str, noisy: np.ndarray) -> np.ndarray:
  """fn(noisy), kept in `cache_dir` under a hash of the noisy images.

  BM3D takes ~20 s for one 1024x1024 image: a rerun of the same grid (say,
  with another model) reuses the baselines' outputs.
  """
  path = _cache_path(cache_dir, name, noisy)
  if path and os.path.exists(path):
    return np.load(path)
  out = fn(noisy)
  if path:
    _save_atomic(path, out)
  return out


def _baseline_per_image(cache_dir: str, apply, name: str,
                        noisy: Sequence[np.ndarray]) -> List[np.ndarray]:
  """A baseline on images of any sizes, [H, W, 1] each, cached one by one.

  Images of the same shape missing from the cache go to `apply` together,
  so its worker pool shares them out.
  """
  outputs: List[Optional[np.ndarray]] = [None] * len(noisy)
  paths = [_cache_path(cache_dir, name, n[None]) for n in noisy]
  missing: Dict[Tuple[int, ...], List[int]] = {}
  for i, path in enumerate(paths):
    if path and os.path.exists(path):
      outputs[i] = np.load(path)[0]
    else:
      missing.setdefault(noisy[i].shape, []).append(i)
  for indices in missing.values():
    results = apply(np.stack([noisy[i] for i in indices]))
    for i, result in zip(indices, results):
      outputs[i] = result
      if paths[i]:
        _save_atomic(paths[i], result[None])
  return outputs


def _cache_path(cache_dir: str, name: str, noisy: np.ndarray) -> str:
  if not cache_dir:
    return ''
  digest = hashlib.sha1(np.ascontiguousarray(noisy).tobytes()).hexdigest()
  return os.path.join(cache_dir, f'{name}-{digest[:20]}.npy')


def _save_atomic(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.save(path + '.tmp.npy', array)
  os.replace(path + '.tmp.npy', path)


def _scores_per_image(denoised: Sequence[np.ndarray],
                      clean: Sequence[np.ndarray]) -> Dict[str, Any]:
  per = [_metrics(d[None], c[None]) for d, c in zip(denoised, clean)]
  return _summary(np.concatenate([p[0] for p in per]),
                  np.concatenate([p[1] for p in per]))


def _metrics(denoised: np.ndarray, clean: np.ndarray):
  return (np.asarray(metrics.psnr(jnp.asarray(denoised), jnp.asarray(clean))),
          np.asarray(metrics.ssim(jnp.asarray(denoised), jnp.asarray(clean))))


def _scores(denoised: np.ndarray, clean: np.ndarray) -> Dict[str, Any]:
  return _summary(*_metrics(denoised, clean))


def _summary(psnr: np.ndarray, ssim: np.ndarray) -> Dict[str, Any]:
  return {'psnr': float(psnr.mean()), 'ssim': float(ssim.mean()),
          'psnr_std': float(psnr.std()), 'ssim_std': float(ssim.std()),
          'psnr_per_image': psnr, 'num_images': len(psnr)}


def apply_model(denoiser, noisy: np.ndarray,
                told: Optional[noise_estimation.NoiseEstimate] = None
                ) -> np.ndarray:
  """Runs a model on [N, H, W, 1] images, tiling where it needs to.

  Each image is denoised as `xdn-denoise` would: a model with a noise-level
  input estimates each image's noise unless `told` it. Small images go
  through in batches, large ones one by one (whole or in tiles).
  """
  fixed = getattr(denoiser, 'fixed_size', None)
  small = fixed is None and noisy.shape[1] * noisy.shape[2] <= 256 * 256
  if small or noisy.shape[1:3] == (fixed, fixed):
    return np.asarray(denoiser(noisy) if told is None else
                      denoiser(noisy, [told] * len(noisy)), np.float32)
  return np.stack([inference.denoise_image(denoiser, image[..., 0],
                                           noise_level=told)
                   for image in noisy])[..., None]


@dataclasses.dataclass
class Evaluation:
  """Scores per (setting, method), and the figure's images."""
  settings: List[Setting]
  methods: List[str]  # Column names, in order.
  rows: List[Dict[str, Any]]  # One per (setting, method).
  figure: Dict[str, np.ndarray]  # Method -> its output on the figure image.
  figure_setting: Setting


def evaluate(clean: np.ndarray, settings: Sequence[Setting],
             models: Dict[str, Any], baseline_names: Sequence[str], *,
             seed: int = 0, read_noise: float = noise.DEFAULT_READ_NOISE,
             pool=None,
             figure_setting: Optional[Setting] = None,
             figure_image: int = 0, cache_dir: str = '',
             oracle_noise: bool = False) -> Evaluation:
  """Scores every model and baseline on `clean` [N, S, S, 1] per setting.

  `models` maps column names to denoisers ([B, H, W, 1] -> same, in [0, 1]).
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
      noisy = [noisy_image(c, setting, seed, i, read_noise)
               for i, c in enumerate(clean)]
    else:
      noisy = noisy_images(clean, setting, seed, read_noise)
    outputs = {}
    told = None  # Only models with a noise-level input use it.
    if oracle_noise and (setting.kind in noise.AFFINE_KINDS or
                         setting.kind in noise.CORRELATED_KINDS):
      told = noise_estimation.known_noise(setting.kind, setting.level,
                                          read_noise, setting.correlation)
    for name, denoiser in models.items():
      begin = time.time()
      outputs[name] = ([apply_model(denoiser, n[None], told)[0]
                        for n in noisy] if per_image
                       else apply_model(denoiser, noisy, told))
      logging.info('  %s: %.2fs per image', name,
                   (time.time() - begin) / len(noisy))
    for name in baseline_names:
      begin = time.time()
      apply = functools.partial(baselines.apply_many, name,
                                kind=setting.kind, level=setting.level,
                                read_noise=read_noise,
                                correlation=setting.correlation, pool=pool)
      cache = cache_dir if name in baselines.SLOW else ''  # Others: ms.
      outputs[baselines.DISPLAY_NAMES[name]] = (
          _baseline_per_image(cache, apply, name, noisy) if per_image
          else _cached(cache, apply, name, noisy))
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
               'ssim',
               'psnr_std', 'ssim_std', 'num_images')
_JSON_FIELDS = _CSV_FIELDS + ('psnr_per_image',)


def write_results(out_dir: str, evaluation: Evaluation,
                  meta: Dict[str, Any]) -> str:
  """Writes the Markdown, CSV and JSON results; returns the Markdown table."""
  os.makedirs(out_dir, exist_ok=True)
  table = markdown_table(evaluation)
  told = ('models told the true noise level' if meta.get(
      'noise_told_to_models') else 'models estimate the noise level (blind)')
  preamble = (f'PSNR (dB) / SSIM on {meta["num_images"]} images of '
              f'{meta["data"]}:{meta["split"]}, noise seed {meta["seed"]}; '
              f'{told}; best per row in bold.\n\n')
  _write_text(os.path.join(out_dir, 'eval_results.md'), preamble + table)
  with open(os.path.join(out_dir, 'eval_results.csv.tmp'), 'w',
            newline='') as f:
    writer = csv.DictWriter(f, _CSV_FIELDS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(evaluation.rows)
  os.replace(os.path.join(out_dir, 'eval_results.csv.tmp'),
             os.path.join(out_dir, 'eval_results.csv'))
  rows = [{k: (np.round(r[k], 3).tolist() if k == 'psnr_per_image' else r[k])
           for k in _JSON_FIELDS} for r in evaluation.rows]
  _write_text(os.path.join(out_dir, 'eval_results.json'), json.dumps(
      {**meta, 'methods': evaluation.methods,
       'settings': [dataclasses.asdict(s) | {'label': s.label}
                    for s in evaluation.settings],
       'results': rows}, indent=2))
  return table


def _write_text(path: str, text: str) -> None:
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


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
  fig.savefig(path + '.tmp.png', dpi=120)
  plt.close(fig)
  os.replace(path + '.tmp.png', path)


# --------------------------------------------------------------------- CLI


def split_workdirs(values: Sequence[str]) -> List[str]:
  """Flattens repeated and comma-separated --workdir values."""
  return [w.strip() for v in values for w in v.split(',') if w.strip()]


def model_labels(denoisers: Sequence[Any], workdirs: Sequence[str]
                 ) -> List[str]:
  """Column names: the model name, with the workdir when names repeat."""
  names = [d.name for d in denoisers]
  return [n if names.count(n) == 1 else
          f'{n} ({os.path.basename(os.path.normpath(w))})'
          for n, w in zip(names, workdirs)]


def at_strengths(labels: Sequence[str], denoisers: Sequence[Any],
                 strengths: Optional[Sequence[str]]) -> Dict[str, Any]:
  """Columns: each model at each strength, 'name (level)'.

  None: each at its default strength, labelled by name alone. ['levels']:
  each at every level it has (its calibrated ones, and 'full').
  Models without a noise-level input appear once, as they are.
  """
  from xdn.inference import strength as strength_lib  # pylint: disable=g-import-not-at-top
  if strengths is None:
    return dict(zip(labels, denoisers))
  columns = {}
  for label, denoiser in zip(labels, denoisers):
    if not getattr(denoiser, 'takes_noise_map', False):
      columns[label] = denoiser
      continue
    wanted = strengths
    if list(strengths) == ['levels']:
      calibrated = strength_lib.calibrated_levels(
          denoiser.config.get('inference', {}))
      wanted = [l for l in strength_lib.LEVELS
                if l in calibrated or l == 'full']
    for strength in wanted:
      value = strength_lib.parse(strength)
      name = value if isinstance(value, str) else f'{value:g}'
      columns[f'{label} ({name})'] = denoiser.at_strength(value)
  return columns


def choose_baselines(names: Sequence[str], skip_slow: bool) -> List[str]:
  for name in names:
    baselines.get(name)  # Raises naming the flag for unknown names.
  return [n for n in names if not (skip_slow and n in baselines.SLOW)]



def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  from xdn.runtime import compile_cache  # pylint: disable=g-import-not-at-top
  compile_cache.enable()
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top  # JAX.
  checkpoints.quiet_orbax_logs()
  try:
    _main()
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None


def folder_images(path: str, split: str, limit: int = 0
                  ) -> List[np.ndarray]:
  """Clean [H, W, 1] images of a folder's split ('all': every file)."""
  from xdn.data import folder  # pylint: disable=g-import-not-at-top
  files = folder.list_files(path)
  if split != 'all':
    if split not in folder.SPLITS:
      raise errors.UserError(f'--split={split!r} for a --folder: use one of '
                             f'{folder.SPLITS} or all')
    files = folder.split_files(files, FLAGS.split_fractions)[split]
  files = files[:limit or None]
  if not files:
    raise errors.UserError(f'no images in split {split!r} of {path!r}')
  images = []
  for relative in files:
    try:
      images.append(radiograph_io.read_radiograph(
          os.path.join(path, relative)).pixels[..., None])
    except Exception as e:  # pylint: disable=broad-except  # Any: skip it.
      logging.warning('Skipping %s: %s', relative, str(e).splitlines()[0])
  logging.info('%d of %d images of %s:%s read (%d skipped)', len(images),
               len(files), path, split, len(files) - len(images))
  if not images:
    raise errors.UserError(f'no readable images in split {split!r} of '
                           f'{path!r}')
  return images


def _data_config(workdirs: Sequence[str]):
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  if FLAGS.config is not None:
    data_config = FLAGS.config.data
  elif workdirs and workdirs[0] != 'pretrained':
    data_config = checkpoints.read_config(workdirs[0]).data
  else:
    raise errors.UserError('name the test images: --folder=DIR, or '
                           '--config=configs/default.py for the embedded '
                           'sample')
  data_config = data_config.copy_and_resolve_references()
  if FLAGS.data_dir is not None:
    data_config.data_dir = FLAGS.data_dir
  data_config.num_eval_images = max(FLAGS.num_images, 0)
  return data_config


def _lesion_task(clean, settings, models, baseline_names, out_dir,
                 meta) -> None:
  """--task=lesions (see xdn.evaluation.lesions)."""
  from xdn.evaluation import lesions as lesion_eval  # pylint: disable=g-import-not-at-top
  result = lesion_eval.evaluate_lesions(
      [np.asarray(c)[..., 0] for c in clean], settings,
      _task_methods(models, baseline_names), _task_noisy,
      sizes=_lesion_sizes(), per_size=FLAGS.lesions_per_size,
      target_d_prime=FLAGS.lesion_d_prime, seed=FLAGS.seed)
  lesion_eval.write(out_dir, result, meta)


def _fidelity_task(clean, settings, models, baseline_names, out_dir,
                   meta) -> None:
  """--task=fidelity (see xdn.evaluation.fidelity)."""
  from xdn.evaluation import fidelity as fidelity_report  # pylint: disable=g-import-not-at-top
  result = fidelity_report.evaluate_fidelity(
      [np.asarray(c)[..., 0] for c in clean], settings,
      _task_methods(models, baseline_names), _task_noisy,
      sizes=_lesion_sizes(), per_size=FLAGS.lesions_per_size,
      target_d_prime=FLAGS.lesion_d_prime, seed=FLAGS.seed)
  meta['strengths'] = {name: getattr(d, 'strength_label', '')
                       for name, d in models.items()}
  print(fidelity_report.write(out_dir, result, meta))
  logging.info('Wrote fidelity_results.md/.json, fidelity_frontier.png and '
               'fidelity_nps.png to %s', out_dir)


def _calibrate_task(clean, settings, label, denoiser, workdir, out_dir,
                    meta) -> None:
  """--task=calibrate (see xdn.evaluation.calibration)."""
  from xdn.evaluation import calibration as strength_calibration  # pylint: disable=g-import-not-at-top
  if not getattr(denoiser, 'takes_noise_map', False):
    raise errors.UserError(f'model {label!r} takes no noise level: it has no '
                           'strength levels to calibrate')
  try:
    factors = sorted({float(f) for f in FLAGS.calibration_factors})
  except ValueError:
    raise errors.UserError(f'--calibration_factors='
                           f'{FLAGS.calibration_factors}: give numbers') from None
  if len(factors) < 2 or factors[0] <= 0 or 1.0 not in factors:
    raise errors.UserError('--calibration_factors: at least two factors > 0, '
                           'including 1')
  result = strength_calibration.calibrate(
      [np.asarray(c)[..., 0] for c in clean], settings, denoiser, _task_noisy,
      lambda d, n, told: apply_model(d, n[None, ..., None], told)[0, ..., 0],
      factors=factors, sizes=_lesion_sizes(),
      per_size=FLAGS.lesions_per_size, target_d_prime=FLAGS.lesion_d_prime,
      seed=FLAGS.seed)
  meta.update({'model': label, 'step': denoiser.step,
               'settings': [s.label for s in settings]})
  print(strength_calibration.write(out_dir, result, meta))
  if workdir not in ('pretrained',) and os.path.isdir(
      os.path.join(workdir, 'checkpoints')):
    strength_calibration.write(workdir, result, meta)
    logging.info('Wrote the levels to %s: its model now uses them', workdir)


def _lesion_sizes() -> List[float]:
  try:
    sizes = [float(s) for s in FLAGS.lesion_sizes]
  except ValueError:
    raise errors.UserError(f'--lesion_sizes={FLAGS.lesion_sizes}: give '
                           'numbers (pixels)') from None
  if not sizes or min(sizes) <= 0 or FLAGS.lesions_per_size < 2:
    raise errors.UserError('--lesion_sizes must be > 0 and '
                           '--lesions_per_size >= 2')
  return sizes


def _task_methods(models, baseline_names) -> Dict[str, Any]:
  """name -> (noisy [H, W], setting) -> denoised, for the task reports:
  models blind as xdn-denoise runs them, baselines told the noise."""
  methods = {}
  for name, denoiser in models.items():
    methods[name] = (lambda d: lambda n, s: apply_model(
        d, n[None, ..., None])[0, ..., 0])(denoiser)
  for name in baseline_names:
    if name == 'noisy':
      continue
    methods[baselines.DISPLAY_NAMES[name]] = (lambda b: lambda n, s: (
        baselines.apply(b, n, s.kind, s.level, FLAGS.read_noise,
                        s.correlation)))(name)
  return methods


def _task_noisy(image: np.ndarray, setting: Setting, index: int) -> np.ndarray:
  return noisy_image(image[..., None], setting, FLAGS.seed, index,
                     FLAGS.read_noise)[..., 0]


def _main() -> None:
  from xdn.data import pipeline  # pylint: disable=g-import-not-at-top  # TF.
  workdirs = split_workdirs(FLAGS.workdir)
  if not workdirs and not FLAGS.out and not FLAGS.pretrained:
    raise errors.UserError('give --workdir (models to evaluate) or, for the '
                           'baselines alone, --out')
  if FLAGS.pretrained and 'pretrained' not in workdirs:
    workdirs.append('pretrained')
  settings = [parse_setting(s) for s in
              join_correlations(FLAGS.settings or DEFAULT_SETTINGS)]
  figure_setting = parse_setting(FLAGS.figure_setting)
  baseline_names = choose_baselines(FLAGS.baselines, FLAGS.skip_slow)
  out_dir = FLAGS.out or (workdirs[0] if workdirs and
                          workdirs[0] != 'pretrained' else '')
  if not out_dir:
    raise errors.UserError('name the results folder with --out')
  if FLAGS.folder:
    data_name, split = FLAGS.folder, FLAGS.split or 'test'
    clean = folder_images(FLAGS.folder, split, FLAGS.num_images)
  else:
    data_config = _data_config(workdirs)
    data_name, split = data_config.name, FLAGS.split or data_config.test_split
    pipeline.prepare(data_config)
    clean = pipeline.eval_images(data_config, split)
  if not 0 <= FLAGS.figure_image < len(clean):
    raise errors.UserError(f'--figure_image={FLAGS.figure_image} but only '
                           f'{len(clean)} images are evaluated')
  logging.info('Evaluating on %d images of %s:%s', len(clean), data_name,
               split)
  denoisers = []
  for workdir in workdirs:
    denoiser = inference.load(workdir, FLAGS.checkpoint, FLAGS.precision)
    if workdir != 'pretrained' and 'data' in denoiser.config:
      if not FLAGS.folder and denoiser.config.data.name != data_name:
        logging.warning('%s was trained on %s but is evaluated on %s',
                        workdir, denoiser.config.data.name, data_name)
    logging.info('Model %s at step %d from %s', denoiser.name, denoiser.step,
                 workdir)
    denoisers.append(denoiser)
  labels = model_labels(denoisers, workdirs)
  if FLAGS.task == 'calibrate':
    _calibrate_task(clean, settings, labels[0], denoisers[0], workdirs[0],
                    out_dir, {'data': data_name, 'split': split,
                              'num_images': len(clean), 'seed': FLAGS.seed})
    return
  models = at_strengths(
      labels, denoisers, FLAGS.strength if FLAGS.strength is not None else
      (['levels'] if FLAGS.task == 'fidelity' else None))
  if FLAGS.task == 'fidelity':
    _fidelity_task(clean, settings, models, baseline_names, out_dir,
                   {'data': data_name, 'split': split,
                    'num_images': len(clean), 'seed': FLAGS.seed})
    return
  if FLAGS.task == 'lesions':
    _lesion_task(clean, settings, models, baseline_names, out_dir,
                 {'data': data_name, 'split': split,
                  'num_images': len(clean), 'seed': FLAGS.seed})
    return

  pool = None
  if FLAGS.processes > 1 and any(b in baselines.SLOW for b in baseline_names):
    # 'spawn': forking a process that has started JAX's threads can deadlock.
    pool = multiprocessing.get_context('spawn').Pool(FLAGS.processes)
  try:
    evaluation = evaluate(clean, settings, models, baseline_names,
                          seed=FLAGS.seed, read_noise=FLAGS.read_noise,
                          pool=pool, figure_setting=figure_setting,
                          figure_image=FLAGS.figure_image,
                          cache_dir=FLAGS.cache,
                          oracle_noise=FLAGS.oracle_noise)
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  meta = {'data': data_name, 'split': split,
          'num_images': len(clean), 'seed': FLAGS.seed,
          'read_noise': FLAGS.read_noise,
          'noise_told_to_models': FLAGS.oracle_noise,
          'models': [{'column': label, 'workdir': w, 'name': d.name,
                      'step': d.step, 'checkpoint': FLAGS.checkpoint}
                     for label, w, d in zip(models, workdirs, denoisers)],
          'baselines': baseline_names}
  table = write_results(out_dir, evaluation, meta)
  save_figure(os.path.join(out_dir, 'eval_figure.png'), evaluation,
              FLAGS.figure_crop)
  print(table)
  logging.info('Wrote %s to %s', ', '.join(RESULT_FILES), out_dir)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-evaluate)."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
