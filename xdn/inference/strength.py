"""Denoising strength: named levels defined by what they keep.

Clinical denoisers ship strength levels (GE TrueFidelity Low / Medium /
High, Canon AiCE Mild / Standard / Strong). xdn's are reached through the
noise conditioning: a model with a noise map is told s times the noise it
sees (`xdn.noise.synthetic.with_noise_map`'s `scale`), and told less it removes
less. Measured on held-out radiographs with inserted lesions, that beats
blending the output with the input at every point. v3 is trained for it
(`xdn.losses.fidelity`).

A level is not a bare factor: it is defined by what it keeps, and each
model carries its own factors, measured by calibration
(`xdn-evaluate --task=calibrate`, `xdn.evaluation.calibration`) and stored
in its config (`inference.strength_levels`):

  low     the strongest setting whose NPW d' of faint inserted lesions is
          >= 0.99 x the noisy input's and mean contrast transfer >= 0.95
  medium  ... NPW and CHO d' both >= 0.95 x the input's, and mean contrast
          transfer >= 0.90
  high    ... NPW and CHO d' both >= 0.90 x the input's
  full    s = 1: told the noise as estimated, the PSNR-optimal setting

A number s in (0, 2] is the factor itself ("0.85": told 85 % of the noise;
above 1 smooths more than `full`). The factor a level needs depends on the
noise: correlated noise needs a lower one for the same fidelity than white
noise, and the factor may change with the noise level (measured for v2:
little from sigma 4.5 to 25). So a calibrated level holds a table of
factors over (neighbour correlation, noise level), [[rho, sigma, s], ...],
interpolated at each image's estimate (linearly in rho and in log sigma,
constant beyond the table); `sigma` is the noise std at mid grey
(`NoiseEstimate.std_at`). X-ray quantum noise, whose std grows steeply
with the attenuation, needs a lower factor than Gaussian noise of the same
std at mid grey (v2: 0.51-0.53 against 0.56-0.61 at rho 0.4), so a table
may hold its rows apart: [[rho, sigma, s, law], ...], law 1 for images
whose estimate follows the X-ray law (`NoiseEstimate.xray_dose` > 0), 0
for the rest; an image of a law the table has no row of reads the other
rows. Older models hold [[rho, s], ...] (one factor per correlation at any
noise level) or a bare factor. Numpy only: the inference path imports it.
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from xdn import errors

Strength = Union[str, float]

LEVELS = ('low', 'medium', 'high', 'full')
# What each level must keep (see the module docstring), as floors on the
# output's figure over the noisy input's: NPW d', CHO d' (where given) and
# the mean contrast transfer (where given).
D_PRIME_FLOORS: Dict[str, float] = {'low': 0.99, 'medium': 0.95,
                                    'high': 0.90}
CHO_FLOORS: Dict[str, float] = {'medium': 0.95, 'high': 0.90}
TRANSFER_FLOORS: Dict[str, float] = {'low': 0.95, 'medium': 0.90}
# The faint lesions the floors are about, as calibration and the fidelity
# report insert them: Gaussian profiles of these stds (px), each at the
# contrast that gives the noisy input this NPW d' (near the threshold of
# detection), this many sites per size and image.
LESION_SIZES: Tuple[float, ...] = (3.0, 5.0, 8.0)
LESION_D_PRIME = 2.5
LESIONS_PER_SIZE = 20


def definition(level: str) -> str:
  """What `level` keeps, in words."""
  if level == 'full':
    return 's = 1: told the noise as estimated (the PSNR-optimal setting)'
  parts = [f"NPW d' >= {D_PRIME_FLOORS[level]}"]
  if level in CHO_FLOORS:
    parts.append(f"CHO d' >= {CHO_FLOORS[level]}")
  text = ' and '.join(parts) + " x the noisy input's"
  if level in TRANSFER_FLOORS:
    text += f', mean contrast transfer >= {TRANSFER_FLOORS[level]}'
  return text
# The default of xdn-denoise, xdn-evaluate and `Denoiser`: chosen by
# measurement (README, "Strength levels"): medium keeps faint lesions as
# detectable as in the noisy input, to 5 %, where full loses 10 %.
DEFAULT = 'medium'
MAX_FACTOR = 2.0
# Written by calibration into a workdir or model folder; read by the loaders
# (`xdn.inference.denoiser`) over the config's own `inference.strength_levels`.
LEVELS_FILE = 'strength_levels.json'


def parse(text: Strength) -> Strength:
  """A level name or a factor in (0, MAX_FACTOR] from a flag or argument."""
  if isinstance(text, (int, float)):
    value = float(text)
  else:
    name = str(text).strip().lower()
    if name in LEVELS:
      return name
    try:
      value = float(name)
    except ValueError:
      raise errors.UserError(
          f'strength {text!r}: use one of {", ".join(LEVELS)} or a number in '
          f'(0, {MAX_FACTOR:g}] (the fraction of the noise the model is '
          'told)') from None
  if not 0 < value <= MAX_FACTOR:
    raise errors.UserError(f'strength {value:g} is out of range: use a number '
                           f'in (0, {MAX_FACTOR:g}] or one of '
                           f'{", ".join(LEVELS)}')
  return value


# A level's factors: [(rho, factor), ...] or [(rho, sigma, factor), ...],
# sorted.
Curve = List[Tuple[float, ...]]
# The noise level (std at mid grey, 0-255) a table is read at when an
# image's noise is not known: the centre of the first calibration grid.
REFERENCE_SIGMA = 25.0


def _as_curve(value) -> Curve:
  """A level's stored value (a factor, [[rho, factor], ...],
  [[rho, sigma, factor], ...] or [[rho, sigma, factor, law], ...]) as a
  sorted list of points."""
  if isinstance(value, (int, float)):
    return [(0.0, float(value))]
  points = sorted(tuple(float(x) for x in p) for p in value)
  if not points:
    raise ValueError('a strength level needs at least one factor')
  widths = {len(p) for p in points}
  if widths not in ({2}, {3}, {4}):
    raise ValueError('a strength level is a factor, [[rho, factor], ...], '
                     '[[rho, sigma, factor], ...] or [[rho, sigma, factor, '
                     'law], ...]')
  if widths != {2} and min(p[1] for p in points) <= 0:
    raise ValueError('a strength table\'s noise levels must be > 0')
  if widths == {4} and not {p[3] for p in points} <= {0.0, 1.0}:
    raise ValueError('a strength table\'s law is 0 (any noise) or 1 (X-ray '
                     'quantum noise)')
  return points


def calibrated_levels(inference_config: Optional[Mapping]
                      ) -> Dict[str, Curve]:
  """The model's measured factors per level ({} when never calibrated)."""
  levels = (inference_config or {}).get('strength_levels', None) or {}
  return {k: _as_curve(v) for k, v in levels.items() if k in LEVELS}


def curve_factor(curve: Curve, correlation: float = 0.0,
                 sigma: Optional[float] = None, xray: bool = False) -> float:
  """A level's factor at a noise of this neighbour `correlation` and level
  `sigma` (std at mid grey, 0-255; None: REFERENCE_SIGMA), following the
  X-ray law or not (`xray`): linear in rho and in log sigma between the
  calibrated points of that law, constant beyond them."""
  if len(curve[0]) == 2:
    rhos, factors_ = zip(*curve)
    return float(np.interp(correlation, rhos, factors_))
  if len(curve[0]) == 4:
    law = 1.0 if xray else 0.0
    curve = [p[:3] for p in curve if p[3] == law] or [p[:3] for p in curve]
  log_sigma = np.log(max(REFERENCE_SIGMA if sigma is None else sigma, 1e-3))
  by_rho: Dict[float, List[Tuple[float, float]]] = {}
  for rho, level, f in curve:
    by_rho.setdefault(rho, []).append((np.log(level), f))
  rhos = sorted(by_rho)
  at_sigma = [np.interp(log_sigma, *zip(*sorted(by_rho[rho])))
              for rho in rhos]
  return float(np.interp(correlation, rhos, at_sigma))


def read_levels_file(folder: str) -> Optional[Dict[str, list]]:
  """The levels of `folder`'s LEVELS_FILE, or None when it has none.

  A file that does not parse is a one-line error naming it.
  """
  path = os.path.join(folder, LEVELS_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      levels = json.load(f)['levels']
    return {k: [list(p) for p in _as_curve(v)] for k, v in levels.items()
            if k in LEVELS}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise errors.UserError(f'{path}: not a strength-levels file ({e}); '
                           "recalibrate the model (xdn-evaluate's calibrate "
                           'task) or remove it') from None


def default_for(inference_config: Optional[Mapping]) -> str:
  """DEFAULT for a calibrated model; 'full' (as before levels) otherwise."""
  return DEFAULT if calibrated_levels(inference_config) else 'full'


def factor(strength: Optional[Strength], inference_config: Optional[Mapping],
           model_name: str = 'model', correlation: float = 0.0,
           sigma: Optional[float] = None, xray: bool = False) -> float:
  """The noise factor s of `strength` for a model's `inference` config, at
  a noise of this neighbour `correlation` and level `sigma` (std at mid
  grey on 0-255; None: REFERENCE_SIGMA), of the X-ray law or not.

  None: the model's default (`default_for`). A level name the model was
  not calibrated for (all but 'full') is a one-line error saying how to
  calibrate it.
  """
  if strength is None:
    strength = default_for(inference_config)
  strength = parse(strength)
  if not isinstance(strength, str):
    return float(strength)
  if strength == 'full':
    return 1.0
  levels = calibrated_levels(inference_config)
  if strength not in levels:
    raise errors.UserError(
        f'model {model_name!r} has no calibrated strength levels, so '
        f'{strength!r} is not defined for it; use strength full or a '
        'number (e.g. 0.8), or calibrate the model (xdn-evaluate\'s '
        'calibrate task; README, "Strength levels")')
  return curve_factor(levels[strength], correlation, sigma, xray)


def factors(strength: Optional[Strength], inference_config: Optional[Mapping],
            model_name: str, noise_levels: Optional[Sequence[Any]],
            count: int) -> np.ndarray:
  """[count] float32 factors, one per image: a calibrated level is read at
  each image's estimated noise (`noise_levels`: `NoiseEstimate`s, their
  `correlation`, `std_at()` and law; None: white noise at
  REFERENCE_SIGMA)."""
  if noise_levels is None:
    return np.full(count, factor(strength, inference_config, model_name),
                   np.float32)
  return np.array([factor(strength, inference_config, model_name,
                          level.correlation, level.std_at(),
                          getattr(level, 'xray_dose', 0.0) > 0)
                   for level in noise_levels], np.float32)


def describe(strength: Optional[Strength],
             inference_config: Optional[Mapping]) -> str:
  """'medium (s 0.63)', 'medium (s 0.66; 0.52 at rho 0.7)', 'medium
  (s 0.58-0.93 by noise level and correlation)' or 's 0.85' for logs,
  tables and DICOM descriptions."""
  if strength is None:
    strength = default_for(inference_config)
  strength = parse(strength)
  if not isinstance(strength, str):
    return f's {float(strength):.2f}'
  curve = calibrated_levels(inference_config).get(strength)
  if strength == 'full' or curve is None:
    return f'{strength} (s 1.00)' if strength == 'full' else strength
  if len(curve[0]) >= 3:
    low, high = min(p[2] for p in curve), max(p[2] for p in curve)
    if high - low < 0.005:
      return f'{strength} (s {low:.2f})'
    return (f'{strength} (s {low:.2f}-{high:.2f} by noise level and '
            'correlation)')
  first = f's {curve[0][1]:.2f}'
  rest = '; '.join(f'{f:.2f} at rho {rho:.1f}' for rho, f in curve[1:])
  return f'{strength} ({first}{"; " + rest if rest else ""})'
