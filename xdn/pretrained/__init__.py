"""The denoiser shipped inside xdn: its weights, config and model card.

`load()` reads them; `xdn.inference.denoiser.load_pretrained()` makes a `Denoiser`
of them. The files here are written by `xdn-export` from a
`run.py --config=configs/pretrained.py` training run (see MODEL_CARD.md):
  weights.msgpack  the parameters (float16; flax msgpack serialization)
  config.json      the training config, with the data path left out
"""

import json
import os
from typing import Any, Dict, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn import errors

NAME = 'xdn-pretrained'
FOLDER = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = 'weights.msgpack'
CONFIG = 'config.json'


def available(folder: str = FOLDER) -> bool:
  return all(os.path.exists(os.path.join(folder, f))
             for f in (WEIGHTS, CONFIG))


def load(folder: str = FOLDER
         ) -> Tuple[ml_collections.ConfigDict, Dict[str, Any], int]:
  """(training config, variables {'params': float32 arrays}, step)."""
  if not available(folder):
    raise errors.UserError(
        f'the shipped model is missing from {folder} ({WEIGHTS}, {CONFIG}); '
        'reinstall xdn, or use a model you trained (its workdir)')
  with open(os.path.join(folder, CONFIG)) as f:
    saved = json.load(f)
  with open(os.path.join(folder, WEIGHTS), 'rb') as f:
    tree = flax.serialization.msgpack_restore(f.read())
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32),
                        tree['params'])
  config = ml_collections.ConfigDict(saved['config'])
  return config, {'params': params, 'batch_stats': {}}, int(saved['step'])


def save(folder: str, config: ml_collections.ConfigDict,
         params: Dict[str, Any], step: int, source: str,
         dtype: str = 'float16') -> str:
  """Writes a model as `load` reads it: `params` in `dtype` and the config
  (with `source`, where it came from, beside them). The weights are
  written under a temporary name, then renamed: a killed run never leaves
  a half-written model. Returns the weights' path."""
  params = jax.tree.map(lambda x: np.asarray(x, dtype), params)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, WEIGHTS)
  with open(path + '.tmp', 'wb') as f:
    f.write(flax.serialization.msgpack_serialize({'params': params}))
  os.replace(path + '.tmp', path)
  with open(os.path.join(folder, CONFIG + '.tmp'), 'w') as f:
    json.dump({'step': int(step), 'workdir': source,
               'parameter_dtype': dtype,
               'config': json.loads(config.to_json_best_effort())},
              f, indent=2, sort_keys=True)
  os.replace(os.path.join(folder, CONFIG + '.tmp'),
             os.path.join(folder, CONFIG))
  return path
