"""`xdn-evaluate --task=calibrate`: measure a model's strength levels.

Each level of `xdn.inference.strength` is defined by what it keeps (NPW d'
of faint inserted lesions over the noisy input's, and for 'low' the
contrast transfer too). Calibration measures, on clean images of the
user's choice (held-out patients) and a few noise settings, the lesion
figures of the model told s x the noise for a grid of factors s
(`xdn.evaluation.fidelity`, PSNR and lesions only), averages them over
settings and lesion sizes, and takes for each level the largest s that
still meets its floor, interpolated between grid points.

Levels are measured per noise: the settings are grouped by their noise's
neighbour correlation (white kinds: 0) and, within a group, by the noise
level the images' estimates give (their std at mid grey, 0-255, the
number inference reads the table at; settings within MERGE_RATIO of each
other are pooled). Each group gets its own factors, so a level is a table
[[rho, sigma, s], ...]: correlated noise needs a lower factor for the same
fidelity, and the factor may change with the noise level (for v2 it
barely does from sigma 4.5 to 25). Each (setting, size)
figure counts at most 1 (the input's) in the averages, so a setting where
the output beats the input (clipping at sigma 50 hurts the input's d')
does not make up for one that falls short. The result,
`strength_levels.json`, is what the loaders read
(`xdn.inference.denoiser`): in a training workdir it is used at once, and
`xdn-export` carries it into an exported model.
"""

import hashlib
import json
import os
from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from xdn import errors
from xdn.evaluation import fidelity as fidelity_report
from xdn.evaluation import settings as settings_lib
from xdn.inference import strength as strength_lib
from xdn.io import atomic
from xdn.metrics import observers
from xdn.noise import estimation as noise_estimation

FACTORS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Settings of one correlation whose estimated noise levels are within this
# ratio of each other are pooled into one point of the table.
MERGE_RATIO = 1.3


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
  """Estimates each noisy image's noise once (every factor of the grid
  sees the same noisy images), and notes the noise level and law of each
  setting's lesion-free noisy images (`note`)."""

  def __init__(self):
    self._cache: Dict[str, noise_estimation.NoiseEstimate] = {}
    self.levels: Dict[str, Dict[str, float]] = {}
    self.laws: Dict[str, Dict[str, bool]] = {}

  def __call__(self, noisy: np.ndarray, label: str
               ) -> noise_estimation.NoiseEstimate:
    return self._estimate(noisy)[1]

  def _estimate(self, noisy: np.ndarray
                ) -> Tuple[str, noise_estimation.NoiseEstimate]:
    key = hashlib.sha1(np.ascontiguousarray(noisy).tobytes()).hexdigest()
    if key not in self._cache:
      self._cache[key] = noise_estimation.estimate_noise(noisy)
    return key, self._cache[key]

  def note(self, noisy: np.ndarray, label: str) -> None:
    """Counts `noisy` (lesion-free) as one of setting `label`'s images."""
    key, found = self._estimate(noisy)
    self.levels.setdefault(label, {})[key] = found.std_at()
    self.laws.setdefault(label, {})[key] = found.xray_dose > 0

  def level(self, label: str) -> float:
    """The setting's noise level: the geometric mean over its images."""
    return _geometric_mean(self.levels[label].values())

  def xray(self, label: str) -> bool:
    """Whether most of the setting's images were estimated to follow the
    X-ray law (as inference will read them)."""
    laws = list(self.laws[label].values())
    return 2 * sum(laws) > len(laws)


def _geometric_mean(levels) -> float:
  """Of noise levels (std, 0-255; each at least 1e-3)."""
  return float(np.exp(np.mean(np.log(np.maximum(list(levels), 1e-3)))))


class Point(NamedTuple):
  """A point of the table: the settings pooled there."""
  rho: float
  sigma: float
  labels: List[str]
  xray: bool = False  # Their noise follows the X-ray law (estimated).


def noise_groups(settings: Sequence[Any], level_of: Callable[[str], float],
                 merge_ratio: float = MERGE_RATIO,
                 xray_of: Callable[[str], bool] = lambda label: False
                 ) -> List[Point]:
  """The table's points, the settings grouped by their noise's law
  (`xray_of`) and nominal correlation and, within one group, their noise
  levels pooled while each is within `merge_ratio` of the group's first
  (sigma: the geometric mean of the pooled levels)."""
  by_rho: Dict[Tuple[bool, float], List[str]] = {}
  for setting in settings:
    rho = round(float(getattr(setting, 'correlation', 0.0)), 2)
    by_rho.setdefault((xray_of(setting.label), rho), []).append(
        setting.label)
  points = []
  for (xray, rho), labels in sorted(by_rho.items()):
    labels = sorted(labels, key=level_of)
    pooled: List[List[str]] = []
    for label in labels:
      if pooled and level_of(label) <= merge_ratio * level_of(pooled[-1][0]):
        pooled[-1].append(label)
      else:
        pooled.append([label])
    for group in pooled:
      sigma = _geometric_mean(level_of(l) for l in group)
      points.append(Point(rho, round(sigma, 2), group, xray))
  return points


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
              sizes: Sequence[float] = strength_lib.LESION_SIZES,
              per_size: int = strength_lib.LESIONS_PER_SIZE,
              target_d_prime: float = strength_lib.LESION_D_PRIME,
              seed: int = 0,
              geometry: observers.EyeGeometry = observers.EyeGeometry(),
              earlier: Sequence[Tuple[Any, List[Dict[str, Any]]]] = ()
              ) -> Dict[str, Any]:
  """Measures `denoiser`'s levels (blind: each noisy image's noise
  estimated, as xdn-denoise does). `apply(denoiser, noisy [H, W], told)`
  denoises one image told the estimate. Levels come per law, correlation
  and noise level of the settings: {level: [[rho, sigma, factor(, law)],
  ...]}. `earlier`: (setting, its rows) of earlier calibrations of the same
  images, seed, lesions and factors (`earlier_rows`), counted as if
  measured here."""
  estimate = _CachedEstimates()
  methods = {
      f's {f:.2f}': (lambda d: lambda n, s: apply(d, n, estimate(n, s.label)))(
          denoiser.at_strength(f)) for f in factors}
  result = fidelity_report.evaluate_fidelity(
      clean, settings, methods, make_noisy, sizes=sizes, per_size=per_size,
      target_d_prime=target_d_prime, seed=seed, full=False,
      geometry=geometry)
  for setting, rows in earlier:
    result['rows'].extend(rows)
  settings = list(settings) + [setting for setting, _ in earlier]
  # Each setting's noise as estimated on its lesion-free noisy images (the
  # same draws as measured; those of `earlier` too).
  for setting in settings:
    for i, image in enumerate(clean):
      estimate.note(make_noisy(image, setting, i), setting.label)
  curves, groups, points = {}, {}, []
  for point in noise_groups(settings, estimate.level,
                            xray_of=estimate.xray):
    name = point_name(point.rho, point.sigma, point.xray)
    rows = [r for r in result['rows'] if r['setting'] in point.labels]
    curves[name] = _capped_curve(rows, factors, sizes)
    groups[name] = point.labels
    points.append((point.rho, point.sigma, name, point.xray))
  own = own_noise(clean)
  table = table_from_curves(points, curves, own)
  return {**table, 'curves': curves, 'groups': groups,
          'rows': result['rows'], 'sizes': list(sizes),
          'target_d_prime': target_d_prime, 'own_noise_sigma': own,
          'definitions': {level: strength_lib.definition(level)
                          for level in strength_lib.LEVELS}}


# A table point's noise must be at least this many times the clean
# images' own noise (see `table_from_curves`).
MIN_OVER_OWN_NOISE = 2.0


# What calibrations must share for one to count another's rows.
SHARED = ('data', 'split', 'num_images', 'seed', 'read_noise', 'factors',
          'sizes', 'per_size', 'target_d_prime')


def earlier_rows(folder: str, settings: Sequence[Any],
                 meta: Dict[str, Any]) -> List[Tuple[Any, List[Dict[str,
                                                                   Any]]]]:
  """(setting, rows) of the calibration written to `folder` for each of
  its settings not among `settings`, after checking that it measured what
  this one does (`meta`'s SHARED entries); a one-line error otherwise."""
  path = os.path.join(folder, 'strength_calibration.json')
  try:
    with open(path) as f:
      saved = json.load(f)
    rows = saved['rows']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f'{path}: not a calibration to extend ({e}); '
                           'name the output folder of an earlier '
                           'calibrate task') from None
  differ = [k for k in SHARED if saved.get(k) != meta.get(k)]
  if differ:
    raise errors.UserError(
        f'{folder}: calibrated with other {", ".join(differ)} '
        f'({", ".join(f"{k}={saved.get(k)!r}" for k in differ)}); extend '
        'only a calibration of the same images, seed, lesions and factors')
  mine = {s.label for s in settings}
  by_label: Dict[str, List[Dict[str, Any]]] = {}
  for row in rows:
    if row['setting'] not in mine:
      by_label.setdefault(row['setting'], []).append(row)
  known = {s.label: s for s in map(settings_lib.from_json,
                                   saved.get('setting_specs', []))}
  missing = sorted(set(by_label) - set(known))
  if missing:
    raise errors.UserError(f'{folder}: its settings {missing} are not '
                           'recorded as noise specs; calibrate them again')
  return [(known[label], by_label[label]) for label in sorted(by_label)]


def own_noise(clean: Sequence[np.ndarray]) -> float:
  """The noise the 'clean' images hold of their own (std at mid grey,
  0-255; the geometric mean over images): 8-bit radiographs carry their
  detector's, sigma ~2."""
  return round(_geometric_mean(
      noise_estimation.estimate_noise(np.asarray(c, np.float32)).std_at()
      for c in clean), 2)


def table_from_curves(points: Sequence[Tuple[Any, ...]],
                      curves: Dict[str, List[Dict[str, float]]],
                      own_noise_sigma: float = 0.0) -> Dict[str, Any]:
  """Each level's table [[rho, sigma, factor], ...] from the curves of the
  points (rho, sigma, name[, xray]), and whether each point met each
  level's floors. Where some points are of X-ray noise, each row also
  gives its law: [rho, sigma, factor, 1 for X-ray noise else 0]
  (`strength.curve_factor` reads each image at its own law's rows).

  A point whose noise is under MIN_OVER_OWN_NOISE x the clean images' own
  noise is measured and reported but gives the table no factor: there the
  denoiser also removes the clean images' own noise, which the observer
  counts as anatomy (it is the same in every draw), so the lesion figures
  are biased against it. The table's lowest point then holds below it.
  A point where no measured factor meets a level's floors gives that level
  no factor either, unless no point of its correlation does (then the
  smallest factor, as `levels_from_curve` gives it): its neighbours hold
  there, and `floors_met` says which points could not be met.
  """
  met: Dict[str, bool] = {}
  points = [tuple(p) + (False,) * (4 - len(p)) for p in points]
  with_law = any(p[3] for p in points)
  floor = MIN_OVER_OWN_NOISE * own_noise_sigma
  usable = [p for p in points if p[1] >= floor] or list(points)
  # level -> (law, rho) -> [(sigma, factor, floors met)].
  found_at: Dict[str, Dict[Tuple[bool, float],
                           List[Tuple[float, float, bool]]]] = {}
  for rho, sigma, name, xray in usable:
    found = levels_from_curve(curves[name])
    for level, value in found['floors_met'].items():
      met[f'{level} ({name})'] = value
      found_at.setdefault(level, {}).setdefault((bool(xray), rho), []).append(
          (sigma, found['levels'][level], value))
  levels: Dict[str, Any] = {}
  for level, by_rho in found_at.items():
    for (xray, rho), rows in sorted(by_rho.items()):
      # Where no factor keeps the level's definition (the smallest one
      # measured stands there), the points of this law and correlation
      # that do decide; only where none does is the smallest factor kept.
      kept_rows = [r for r in rows if r[2]] or rows
      law = [float(xray)] if with_law else []
      levels.setdefault(level, []).extend(
          [rho, sigma, value, *law] for sigma, value, _ in kept_rows)
  levels['full'] = 1.0
  left_out = [p[2] for p in points if p not in usable]
  return {'levels': levels, 'floors_met': met, 'left_out': left_out}


def point_name(rho: float, sigma: float, xray: bool = False) -> str:
  """A table point's name in the report: 'rho 0.4, sigma 6.1' (X-ray
  noise: 'X-ray, rho 0.4, sigma 6.1')."""
  return f"{'X-ray, ' if xray else ''}rho {rho:g}, sigma {sigma:.1f}"


def write(out_dir: str, result: Dict[str, Any], meta: Dict[str, Any]) -> str:
  """strength_levels.json (what the loaders read), a markdown table of the
  curves and every row (strength_calibration.md / .json) in `out_dir`;
  returns the table."""
  payload = {**meta, **{k: v for k, v in result.items() if k != 'rows'}}
  atomic.write_json(payload, os.path.join(out_dir, strength_lib.LEVELS_FILE),
                    indent=1)
  lines = []
  left_out = set(result.get('left_out', ()))
  for name, curve in result['curves'].items():
    note = (f' (left out of the table: under {MIN_OVER_OWN_NOISE:g} x the '
            "clean images' own noise, sigma "
            f"{result.get('own_noise_sigma', 0):.1f})"
            if name in left_out else '')
    lines += [f"Noise {name} ({', '.join(result['groups'][name])}){note}:",
              '',
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
