"""The noise settings of an evaluation and the noisy images they make.

A setting is a `xdn.noise.spec.NoiseSpec` whose noise is drawn
(`synthetic.add_noise`). Every method sees the same noisy images: the noise
key of a setting is the seed folded with the kind's index in
`synthetic.NOISE_KINDS`, the level in thousandths and, for correlated noise,
the correlation in thousandths. So a setting's noisy images depend on
nothing else in the grid, and a table made today draws the noise of every
table made before. Noisy images are clipped to [0, 1], as a detector
saturates.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xdn.noise import spec
from xdn.noise import synthetic as noise

Setting = spec.NoiseSpec

# Gaussian sigma 15/25/50 and the seed's tiers; Poisson at a moderate and a
# low dose (noise std at mid-gray ~13 and ~25 on the 0-255 scale); the
# seed's salt-and-pepper tiers.
DEFAULT_SETTINGS: Tuple[str, ...] = (
    'gaussian:15', 'gaussian:25', 'gaussian:50',
    'gaussian_easy', 'gaussian_medium', 'gaussian_hard',
    'poisson:200', 'poisson:50',
    'salt_and_pepper_easy', 'salt_and_pepper_medium', 'salt_and_pepper_hard',
)


def parse(texts: Optional[Sequence[str]] = None) -> List[Setting]:
  """The settings of a comma-split list of noise specs; None or empty: the
  default grid. Raises `errors.UserError` naming a bad spec."""
  return spec.parse_list(texts or DEFAULT_SETTINGS)


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
  """The noisy images [N, H, W, 1] every method of `setting` sees (clipped)."""
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


def as_json(setting: Setting) -> Dict[str, Any]:
  """A setting as the results files record it (their field order)."""
  return {'kind': setting.kind, 'level': setting.level,
          'preset': setting.preset, 'correlation': setting.correlation,
          'label': setting.label}


def from_json(saved: Dict[str, Any]) -> Setting:
  """The setting `as_json` recorded (a setting to draw has one
  correlation)."""
  return Setting(saved['kind'], float(saved['level']),
                 float(saved.get('correlation', 0.0)),
                 preset=saved.get('preset', ''))
