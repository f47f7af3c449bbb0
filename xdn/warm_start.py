"""A run's initial weights: `config.init` ('', 'pretrained' or a workdir).

Fine-tuning starts from a trained model's parameters (and BatchNorm
statistics) with a fresh optimizer at step 0. The run takes that model's
`config.model` section, since the weights only fit their own architecture:
`--config.init=pretrained` is enough to fine-tune the shipped model. A
checkpoint in the run's own workdir still wins: resuming a fine-tune
continues it rather than starting over.
"""

import dataclasses
import os
from typing import Any, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors

# Fields that never change a parameter's shape: the run keeps its own.
_RUN_FIELDS = ('dtype', 'conv_impl')


@dataclasses.dataclass(frozen=True)
class Init:
  """Weights to start from, and the model section they belong to."""
  source: str
  model_config: ml_collections.ConfigDict
  variables: Dict[str, Any]  # 'params' and, if the model has any, 'batch_stats'.


def load(init: str) -> Optional[Init]:
  """The weights `config.init` names; None for '' (random initialisation)."""
  if not init:
    return None
  if init == 'pretrained':
    try:
      from xdn import pretrained  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise errors.UserError(
          "config.init='pretrained' but this xdn ships no model "
          '(xdn/pretrained is missing); pass a training workdir as '
          '--config.init') from None
    model_config, variables = pretrained.load()[:2]  # (config, variables, step)
  elif os.path.isdir(init):
    # Imported here: inference builds on the training state, not the reverse.
    from xdn import inference  # pylint: disable=g-import-not-at-top
    denoiser = inference.load_denoiser(init)
    model_config, variables = denoiser.config, denoiser.variables
  else:
    raise errors.UserError(
        f"config.init={init!r} is neither 'pretrained' nor a folder; pass "
        "'pretrained', a training workdir, or '' for random weights")
  if 'model' in model_config:  # A whole run config: take its model section.
    model_config = model_config.model
  if 'params' not in variables:
    raise errors.UserError(f'config.init={init!r} holds no parameters')
  return Init(init, ml_collections.ConfigDict(model_config.to_dict()),
              dict(variables))


def with_model(config: ml_collections.ConfigDict,
               init: Init) -> ml_collections.ConfigDict:
  """A copy of `config` whose model section is the one of `init`.

  The run keeps its own `_RUN_FIELDS` (how it computes, not what).
  """
  model = init.model_config.to_dict()
  for field in _RUN_FIELDS:
    if field in config.model:
      model[field] = config.model[field]
  old = config.model.to_dict()
  changed = [f'model.{k}={v!r} (was {old.get(k)!r})'
             for k, v in sorted(model.items()) if old.get(k) != v]
  changed += [f'model.{k} dropped' for k in sorted(set(old) - set(model))]
  new = config.copy_and_resolve_references()
  with new.unlocked():
    new.model = ml_collections.ConfigDict(model)
  if changed:
    logging.warning('config.init=%s: using its model: %s', init.source,
                    ', '.join(changed))
  return new


def _shapes(tree: Any) -> Dict[str, tuple]:
  return {jax.tree_util.keystr(path): tuple(jnp.shape(x))
          for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def apply(state, init: Init):
  """`state` with the parameters and BatchNorm statistics of `init`."""
  params = init.variables['params']
  if _shapes(params) != _shapes(state.params):
    raise errors.UserError(
        f'config.init={init.source!r}: its parameters do not fit the model '
        'of this config; leave the model fields at the values of the model '
        'it was trained as')
  batch_stats = init.variables.get('batch_stats') or state.batch_stats
  logging.info('Initial weights from %s', init.source)
  as_arrays = lambda tree: jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, jnp.float32), tree)
  return state.replace(params=as_arrays(params),
                       batch_stats=as_arrays(batch_stats))
