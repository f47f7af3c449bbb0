"""`xdn-evaluate --task=calibrate`: measure a model's strength levels.

Each level of `xdn.inference.strength` is defined by what it keeps (NPW d'
of faint inserted lesions over the noisy input's, and for 'low' the
contrast transfer too). Calibration measures, on clean images of the
user's choice (held-out patients) and a few noise settings, the lesion
figures of the model told s x the noise for a grid of factors s
(`xdn.evaluation.fidelity`, PSNR and lesions only), averages them over
settings and lesion sizes, and takes for each level the largest s that
still meets its floor, interpolated between grid points. Settings are
grouped by their noise's neighbour correlation (white kinds: 0), and each
group gets its own factors: correlated noise needs a lower one for the
same fidelity. Each (setting, size) figure counts at most 1 (the input's)
in the averages, so a setting where the output beats the input (clipping
at sigma 50 hurts the input's d') does not make up for one that falls
short. The result, `strength_levels.json`, is what the loaders read
(`xdn.inference.denoiser`): in a training workdir it is used at once, and
`xdn-export` carries it into an exported model.
"""

import hashlib
import os
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from xdn.evaluation import fidelity as fidelity_report
from xdn.inference import strength as strength_lib
from xdn.io import atomic
from xdn.metrics import observers
from xdn.noise import estimation as noise_estimation

FACTORS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def strongest_meeting(factors: Sequence[float], values: Sequence[float],
                      floor: float) -> float:
  """The largest factor whose value is >= floor, the values taken as
  falling with the factor and interpolated linearly between grid points;
  the smallest factor when none meets it."""
  order = np.argsort(factors)
  f = np.asarray(factors, float)[order]
  v = np.asarray(values, float)[order]
  best = float(f[0])
  for k in range(len(f)):
    if v[k] < floor:
      continue
    best = float(f[k])
    if k + 1 < len(f) and v[k + 1] < floor:
      best += (v[k] - floor) / (v[k] - v[k + 1]) * (f[k + 1] - f[k])
      break
  return round(best, 3)


def kept(level: str, row: Dict[str, float]) -> float:
  """How well a calibration row keeps what `level` asks: the smallest of
  its figures over their floors (>= 1: the level is met)."""
  ratios = [row['npw_ratio'] / strength_lib.D_PRIME_FLOORS[level]]
  if level in strength_lib.CHO_FLOORS:
    ratios.append(row['cho_ratio'] / strength_lib.CHO_FLOORS[level])
  if level in strength_lib.TRANSFER_FLOORS:
    ratios.append(row['transfer_mean'] / strength_lib.TRANSFER_FLOORS[level])
  return min(ratios)


def levels_from_curve(curve: List[Dict[str, float]]) -> Dict[str, Any]:
  """The factor of each level from the calibration curve (one row per
  factor: npw_ratio, cho_ratio, transfer_mean averaged over settings and
  sizes): the largest factor that meets all its floors."""
  factors = [row['factor'] for row in curve]
  levels, met = {}, {}
  for level in strength_lib.D_PRIME_FLOORS:
    keep = [kept(level, row) for row in curve]
    levels[level] = strongest_meeting(factors, keep, 1.0)
    met[level] = bool(max(keep) >= 1.0)
  levels['full'] = 1.0
  # Stronger levels never get a smaller factor than milder ones.
  for milder, stronger in zip(strength_lib.LEVELS, strength_lib.LEVELS[1:]):
    levels[stronger] = max(levels[stronger], levels[milder])
  return {'levels': {k: float(v) for k, v in levels.items()},
          'floors_met': met}


class _CachedEstimates:
  """Estimates each noisy image's noise once: every factor of the grid
  sees the same noisy images."""

  def __init__(self):
    self._cache: Dict[str, noise_estimation.NoiseEstimate] = {}

  def __call__(self, noisy: np.ndarray) -> noise_estimation.NoiseEstimate:
    key = hashlib.sha1(np.ascontiguousarray(noisy).tobytes()).hexdigest()
    if key not in self._cache:
      self._cache[key] = noise_estimation.estimate_noise(noisy)
    return self._cache[key]


def _capped_curve(rows: Sequence[Dict[str, Any]], factors: Sequence[float],
                  sizes: Sequence[float]) -> List[Dict[str, float]]:
  """One row per factor: the figures averaged over the settings of `rows`
  and the lesion sizes, each d' ratio capped at 1."""
  curve = []
  for f in factors:
    mine = [r for r in rows if r['method'] == f's {f:.2f}']
    capped = lambda key: float(np.mean([
        min(r[f'{key}_{s:g}px'], 1.0) for r in mine for s in sizes]))
    curve.append({
        'factor': float(f), 'npw_ratio': capped('npw_ratio'),
        'cho_ratio': capped('cho_ratio'),
        **{key: float(np.mean([r[key] for r in mine]))
           for key in ('psnr', 'ssim', 'transfer_mean', 'transfer_p10')}})
  return curve


def calibrate(clean: Sequence[np.ndarray], settings: Sequence[Any], denoiser,
              make_noisy: Callable[[np.ndarray, Any, int], np.ndarray],
              apply: Callable[..., np.ndarray], *,
              factors: Sequence[float] = FACTORS,
              sizes: Sequence[float] = (3.0, 5.0, 8.0), per_size: int = 10,
              target_d_prime: float = 2.0, seed: int = 0,
              geometry: observers.EyeGeometry = observers.EyeGeometry()
              ) -> Dict[str, Any]:
  """Measures `denoiser`'s levels (blind: each noisy image's noise
  estimated, as xdn-denoise does). `apply(denoiser, noisy [H, W], told)`
  denoises one image told the estimate. Levels come per correlation group
  of the settings: {level: [[rho, factor], ...]}."""
  estimate = _CachedEstimates()
  methods = {
      f's {f:.2f}': (lambda d: lambda n, s: apply(d, n, estimate(n)))(
          denoiser.at_strength(f)) for f in factors}
  result = fidelity_report.evaluate_fidelity(
      clean, settings, methods, make_noisy, sizes=sizes, per_size=per_size,
      target_d_prime=target_d_prime, seed=seed, full=False,
      geometry=geometry)
  groups: Dict[float, List[str]] = {}
  for setting in settings:
    groups.setdefault(round(float(getattr(setting, 'correlation', 0.0)), 2),
                      []).append(setting.label)
  curves, levels, met = {}, {}, {}
  for rho, labels in sorted(groups.items()):
    rows = [r for r in result['rows'] if r['setting'] in labels]
    curves[rho] = _capped_curve(rows, factors, sizes)
    found = levels_from_curve(curves[rho])
    for level, value in found['levels'].items():
      levels.setdefault(level, []).append([rho, value])
    for level, value in found['floors_met'].items():
      met[f'{level} (rho {rho:g})'] = value
  levels['full'] = 1.0
  return {'levels': levels, 'floors_met': met,
          'curves': {f'{rho:g}': c for rho, c in curves.items()},
          'groups': {f'{rho:g}': labels for rho, labels in groups.items()},
          'rows': result['rows'], 'sizes': list(sizes),
          'target_d_prime': target_d_prime,
          'definitions': {level: strength_lib.definition(level)
                          for level in strength_lib.LEVELS}}


def write(out_dir: str, result: Dict[str, Any], meta: Dict[str, Any]) -> str:
  """strength_levels.json (what the loaders read), a markdown table of the
  curves and every row (strength_calibration.md / .json) in `out_dir`;
  returns the table."""
  payload = {**meta, **{k: v for k, v in result.items() if k != 'rows'}}
  atomic.write_json(payload, os.path.join(out_dir, strength_lib.LEVELS_FILE),
                    indent=1)
  lines = []
  for rho, curve in result['curves'].items():
    lines += [f"Correlation {rho} ({', '.join(result['groups'][rho])}):", '',
              '| factor s | PSNR / SSIM | NPW d′ ratio | CHO d′ ratio | '
              'transfer mean / p10 |', '|---|---|---|---|---|']
    for row in curve:
      lines.append(f"| {row['factor']:.2f} | {row['psnr']:.2f} / "
                   f"{row['ssim']:.3f} | {row['npw_ratio']:.3f} | "
                   f"{row['cho_ratio']:.3f} | {row['transfer_mean']:.2f} / "
                   f"{row['transfer_p10']:.2f} |")
    lines.append('')
  described = {level: strength_lib.describe(
      level, {'strength_levels': result['levels']})
               for level in strength_lib.LEVELS}
  table = '\n'.join(lines) + '\nLevels: ' + ', '.join(
      described.values()) + '\n'
  atomic.write_text(table, os.path.join(out_dir, 'strength_calibration.md'))
  # Every (setting, factor) row, for a closer look.
  atomic.write_json({**meta, 'rows': result['rows']},
                    os.path.join(out_dir, 'strength_calibration.json'),
                    indent=1)
  return table
