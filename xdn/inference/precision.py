"""Compute precision: float32, bfloat16, or 'auto' by the model's card.

A model card may state the PSNR cost of computing in bfloat16
(`inference.bfloat16_psnr_cost_db`: one number, the worst over its
held-out settings, or one per noise kind). 'auto' computes in bfloat16
only where the machine does so natively and that cost is at most
MAX_BFLOAT16_COST_DB; outputs are float32 in [0, 1] either way.
"""

from typing import Dict, Optional, Sequence

import jax
import ml_collections

from xdn import errors
from xdn.noise.estimation import NoiseEstimate
from xdn.runtime import xla_flags

PRECISIONS = ('auto', 'float32', 'bfloat16')
# precision='auto' picks bfloat16 only when the model's card states a PSNR
# cost at most this large (config `inference.bfloat16_psnr_cost_db`).
MAX_BFLOAT16_COST_DB = 0.1


def bfloat16_costs(config: ml_collections.ConfigDict) -> Dict[str, float]:
  """The model card's measured bfloat16 PSNR cost (dB) per noise kind.

  `inference.bfloat16_psnr_cost_db` is one number (the worst over the
  held-out settings: key '*') or a mapping kind -> cost, kinds as
  `cost_kind` names them; {} when never measured.
  """
  cost = config.get('inference', {}).get('bfloat16_psnr_cost_db', None)
  if cost is None:
    return {}
  if isinstance(cost, (int, float)):
    return {'*': float(cost)}
  return {k: float(v) for k, v in cost.items()}


def cost_kind(estimate: Optional[NoiseEstimate]) -> str:
  """The noise kind an estimate's bfloat16 cost is looked up under."""
  if estimate is None:
    return '*'
  if estimate.kind == 'gaussian' and estimate.correlation > 0.1:
    return 'correlated_gaussian'
  return estimate.kind


def bfloat16_allowed(costs: Dict[str, float], kinds: Sequence[str]) -> bool:
  """Whether every kind's cost is measured and at most the allowance."""
  if not costs:
    return False
  worst = max(costs.values())
  return all(costs.get(k, worst) <= MAX_BFLOAT16_COST_DB for k in kinds)


def resolve_precision(precision: str, config: ml_collections.ConfigDict
                      ) -> str:
  """'float32', 'bfloat16' or, per call, 'auto' for a requested precision.

  'auto': bfloat16 where the machine computes it natively (a GPU or TPU, or
  a CPU with AVX512_BF16 / AMX) and the model's measured bfloat16 cost is
  at most MAX_BFLOAT16_COST_DB: on every held-out setting when the card
  states one number; per image's noise kind when it states one per kind
  (then 'auto' stays, and each call decides); else float32.
  """
  if precision not in PRECISIONS:
    raise errors.UserError(f'unknown precision {precision!r}; use one of '
                           f'{PRECISIONS}')
  if precision != 'auto':
    return precision
  costs = bfloat16_costs(config)
  native = (jax.default_backend() != 'cpu' or xla_flags.native_bfloat16())
  if not native or not costs or min(costs.values()) > MAX_BFLOAT16_COST_DB:
    return 'float32'
  if set(costs) == {'*'}:
    return 'bfloat16' if costs['*'] <= MAX_BFLOAT16_COST_DB else 'float32'
  return 'auto'


def dtypes(precision: str) -> Sequence[str]:
  """The compute dtypes a resolved precision may call for."""
  return ('float32', 'bfloat16') if precision == 'auto' else (precision,)


def for_kinds(precision: str, config: ml_collections.ConfigDict,
              kinds: Sequence[str]) -> str:
  """The compute dtype of a call of resolved `precision` on images of
  these noise kinds (`cost_kind`): 'auto' decides by `bfloat16_allowed`."""
  if precision != 'auto':
    return precision
  return ('bfloat16' if bfloat16_allowed(bfloat16_costs(config), kinds)
          else 'float32')


def for_call(precision: str, config: ml_collections.ConfigDict,
             noise_levels: Optional[Sequence[NoiseEstimate]]) -> str:
  """The compute dtype of one call on images told `noise_levels` (None:
  none told, kind '*')."""
  return for_kinds(precision, config, [cost_kind(l) for l in noise_levels]
                   if noise_levels else ['*'])
