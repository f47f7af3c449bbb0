"""How a model is told its noise and its strength: one rule, for training
and inference alike.

A model with a noise map (`model.noise_map`) sees, after the [B, H, W, 1]
image, these channels (`model_input`, built by
`xdn.noise.synthetic.with_noise_map`):

  std map       the noise's std per pixel on the [0, 1] scale: var = a x + b,
                plus X-ray noise's own law where the dose N0 > 0
                (`xdn.noise.synthetic.noise_std_map`);
  correlation   (`model.correlation_map`) the neighbour correlation rho
                times the std map;
  strength      (`model.strength_map`, which needs both maps above)
                (1 - s) times the std map.

The strength s is the fraction of the noise a model is told
(`xdn.inference.strength`); None means full (s = 1):

  * a model without a strength map is told s times the noise: both maps
    are scaled by s (None: not scaled at all);
  * a model with a strength map is told the noise as it is and s in its
    own map, up to s = 1, the most it was trained at (training tells s in
    [0.3, 1) to the lesion twins of `xdn.losses.fidelity`, else 1). Beyond
    full (s > 1, inference only) it is told, at full strength, s times the
    noise: maps scaled by max(s, 1), strength map from min(s, 1).

Training (`xdn.training.train.model_input`) and inference
(`xdn.inference.compiled`) each had their own copy of this rule; they
agreed wherever both were used, and this module is both, bit for bit: for
s <= 1 the scale max(s, 1) is exactly 1 and min(s, 1) is s, so a strength
map model's input is what training built.

A model with a fidelity branch (`model.fidelity_branch_width` on a
strength map) adds (1 - s) times the branch's output to its base's, so at
full strength (every image's s >= 1) it is its base alone:
`without_fidelity_branch` is that base, which inference runs instead, for
the same output at a lower cost.
"""

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections

from xdn.noise import synthetic as noise


@dataclasses.dataclass(frozen=True)
class Conditioning:
  """The noise inputs a model takes (from its `config.model` fields)."""
  noise_map: bool = False
  correlation_map: bool = False  # With noise_map only.
  strength_map: bool = False  # With noise_map (and correlation_map).
  # A fidelity branch on a strength map: at full strength, its base alone.
  fidelity_branch: bool = False

  @property
  def channels(self) -> int:
    """Input channels besides the image."""
    return (int(self.noise_map) + int(self.correlation_map) +
            int(self.strength_map))

  @classmethod
  def from_fields(cls, fields: Mapping[str, Any]) -> 'Conditioning':
    """The conditioning of a model with these `config.model` fields."""
    noise_map = bool(fields.get('noise_map', False))
    correlation_map = noise_map and bool(fields.get('correlation_map', False))
    strength_map = noise_map and bool(fields.get('strength_map', False))
    return cls(noise_map, correlation_map, strength_map,
               correlation_map and strength_map and
               fields.get('fidelity_branch_width', 0) > 0)


NONE = Conditioning()  # A model told nothing but the image.


def model_input(images: jax.Array, a: jax.Array, b: jax.Array,
                told: Conditioning, *,
                correlation: Optional[jax.Array] = None,
                xray_dose: Optional[jax.Array] = None,
                strength: Optional[jax.Array] = None) -> jax.Array:
  """What a model sees of [B, H, W, 1] `images` (see the module docstring).

  `a`, `b`: the noise's variance a x + b per image; `correlation` its
  neighbour correlation (None: 0, white); `xray_dose` its X-ray N0 (0 or
  None: none); `strength` s per image (None: full). Returns [B, H, W,
  1 + told.channels].
  """
  channels = told.channels
  if channels == 3:  # A strength map: the noise as it is, and s apart.
    rho = jnp.zeros_like(a) if correlation is None else correlation
    if strength is None:
      return noise.with_noise_map(images, a, b, rho, xray_dose=xray_dose,
                                  strength=jnp.ones_like(a))
    # Beyond full (never trained), a larger noise told at full strength.
    return noise.with_noise_map(
        images, a, b, rho, xray_dose=xray_dose,
        scale=jnp.maximum(strength, 1.0), strength=jnp.minimum(strength, 1.0))
  if channels == 2:
    return noise.with_noise_map(
        images, a, b, jnp.zeros_like(a) if correlation is None else correlation,
        xray_dose=xray_dose, scale=strength)
  if channels == 1:
    return noise.with_noise_map(images, a, b, xray_dose=xray_dose,
                                scale=strength)
  return images


def without_fidelity_branch(config: ml_collections.ConfigDict
                            ) -> ml_collections.ConfigDict:
  """A copy of `config` whose model is the base of its fidelity branch: what
  the model computes at full strength (see the module docstring)."""
  base = config.copy_and_resolve_references()
  base.model.strength_map = False
  base.model.fidelity_branch_width = 0
  return base
