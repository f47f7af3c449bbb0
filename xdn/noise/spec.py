"""The one grammar for naming a noise, shared by every command and by Beam.

  gaussian:25                       white Gaussian, sigma 25 on the 0-255 scale
  correlated_gaussian:25,0.4[,0.3]  the same with neighbour correlation
                                    rho (rho_y, rho_x when two are given)
  poisson:200  poisson_gaussian:50  photon counts per unit intensity
  xray:400,0.6                      quanta per pixel, detector correlation
  salt_and_pepper:0.1  speckle:0.2  the seed's other kinds
  gaussian_medium ...               a preset (`synthetic.PRESETS`)
  none                              no noise added
  auto                              estimate it from the image (where a
                                    caller allows it: `allow_auto=True`)

`parse` turns one such text into a `NoiseSpec`; `split_list` re-joins a
comma-separated list that a list flag split inside a spec's numbers.
Errors name the spec, never a flag: a command adds its flag's name.
"""

import dataclasses
from typing import List, Optional, Sequence

from xdn import errors
from xdn.noise import physics
from xdn.noise import synthetic

AUTO = 'auto'
GRAMMAR = ("'auto', 'none', a preset, or KIND:LEVEL[,RHO[,RHO_X]], e.g. "
           'gaussian:25, correlated_gaussian:25,0.4, poisson:200, '
           'xray:400,0.6')


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
  """A named noise. `level` is in the kind's units (see `synthetic`)."""
  kind: str
  level: float
  correlation: float = 0.0  # Neighbour correlation (correlated kinds).
  correlation_x: Optional[float] = None  # Along x, when it differs.
  preset: str = ''  # The preset it came from, if any.

  @property
  def label(self) -> str:
    """A short human label: 'gaussian σ=25', 'gaussian_medium (σ=22.8)'."""
    rho = f' ρ={self.correlation:.2f}'
    if self.correlation_x is not None:
      rho = f' ρ={self.correlation:.2f},{self.correlation_x:.2f}'
    unit = {'gaussian': f'σ={self.level:.4g}',
            'poisson': f'dose={self.level:.4g}',
            'poisson_gaussian': f'dose={self.level:.4g}',
            'salt_and_pepper': f'{self.level:.0%}',
            'speckle': f'σ={self.level:.3g}',
            'none': 'clean',
            'correlated_gaussian': f'σ={self.level:.4g}' + rho,
            'xray': f'N0={self.level:.4g}' + rho,
            }[self.kind]
    return f'{self.preset} ({unit})' if self.preset else f'{self.kind} {unit}'


def parse(text: str, *, allow_auto: bool = False,
          synthesis: bool = False) -> Optional[NoiseSpec]:
  """One spec (see the module docstring); None for 'auto' where allowed.

  `synthesis`: the noise will be drawn (`synthetic.add_noise`), which takes
  one correlation in [0, MAX]; a noise told to a model may have a second
  one and be negative, as estimates are.

  Raises `errors.UserError` naming the text and the grammar.
  """
  text = text.strip()
  if allow_auto and text == AUTO:
    return None
  if text in synthetic.PRESETS:
    kind, level = synthetic.PRESETS[text]
    return NoiseSpec(kind, float(level), preset=text)
  if text == 'none':
    return NoiseSpec('none', 0.0)
  kind, sep, numbers = text.partition(':')
  if not sep or not numbers:
    raise errors.UserError(f'noise {text!r} needs a level: use {GRAMMAR}')
  try:
    values = [float(v) for v in numbers.split(',')]
  except ValueError:
    raise errors.UserError(f'noise {text!r}: {numbers!r} is not a list of '
                           f'numbers; use {GRAMMAR}') from None
  if kind not in synthetic.NOISE_KINDS:
    raise errors.UserError(f'noise {text!r}: unknown kind {kind!r}; use one '
                           f'of {sorted(synthetic.NOISE_KINDS)} or a preset '
                           f'{sorted(synthetic.PRESETS)}')
  most = 1 if kind not in synthetic.CORRELATED_KINDS else 2 if synthesis else 3
  if len(values) > most:
    raise errors.UserError(
        f'noise {text!r}: {kind} takes one level' +
        (f' and at most {most - 1} correlation(s)' if most > 1 else
         f'; only {synthetic.CORRELATED_KINDS} take a correlation'))
  level, rhos = values[0], values[1:]
  if level < 0:
    raise errors.UserError(f'noise {text!r}: the level must be >= 0')
  low = 0.0 if synthesis else -physics.MAX_CORRELATION
  for rho in rhos:
    if not low <= rho <= physics.MAX_CORRELATION:
      raise errors.UserError(f'noise {text!r}: a correlation must be in '
                             f'[{low:g}, {physics.MAX_CORRELATION}]')
  return NoiseSpec(kind, level, rhos[0] if rhos else 0.0,
                   rhos[1] if len(rhos) > 1 else None)


def split_list(items: Sequence[str]) -> List[str]:
  """Re-joins ['correlated_gaussian:25', '0.37'] that a comma-separated list
  flag split apart: a bare number continues the spec before it."""
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


def parse_list(items: Sequence[str]) -> List[NoiseSpec]:
  """Every spec of a comma-split list (see `split_list`) of noises to draw."""
  return [parse(text, synthesis=True) for text in split_list(items)]
