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
# Fields that only add input channels: the run keeps its own, and the new
# channels' weights start at zero (`apply`), so the widened model computes
# what the one it starts from did.
_WIDENING_FIELDS = ('correlation_map', 'strength_map', 'fidelity_branch_width',
                    'freeze_base')


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
  for field in _RUN_FIELDS + _WIDENING_FIELDS:
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


def _widened(old: Any, new: Any) -> Any:
  """`old` zero-padded to `new`'s shape where one axis grew, else None."""
  old_shape, new_shape = tuple(jnp.shape(old)), tuple(jnp.shape(new))
  if old_shape == new_shape:
    return old
  if len(old_shape) != len(new_shape):
    return None
  grown = [i for i, (o, n) in enumerate(zip(old_shape, new_shape)) if o != n]
  if len(grown) != 1 or new_shape[grown[0]] < old_shape[grown[0]]:
    return None
  pad = [(0, 0)] * len(old_shape)
  pad[grown[0]] = (0, new_shape[grown[0]] - old_shape[grown[0]])
  return jnp.pad(jnp.asarray(old, jnp.float32), pad)


def apply(state, init: Init):
  """`state` with the parameters and BatchNorm statistics of `init`.

  A parameter of the new model that is wider along one axis (an input
  channel added by a `_WIDENING_FIELDS` field) gets the old values and
  zeros for the new entries.
  """
  params = init.variables['params']
  old_paths = _shapes(params)
  new_paths = _shapes(state.params)
  # A sub-module the old model did not have at all (v3's 'fidelity'
  # branch) keeps its fresh initialisation.
  added = sorted(set(state.params) - set(params))
  if added:
    params = {**params, **{k: state.params[k] for k in added}}
    old_paths = _shapes(params)
    logging.warning('config.init=%s: new sub-modules %s start from their '
                    'initialisation', init.source, added)
  if set(old_paths) != set(new_paths):
    raise errors.UserError(
        f'config.init={init.source!r}: its parameters do not fit the model '
        'of this config; leave the model fields at the values of the model '
        'it was trained as')
  if old_paths != new_paths:
    flat_old = dict(jax.tree_util.tree_leaves_with_path(params))
    widened = {}
    for path, new in jax.tree_util.tree_leaves_with_path(state.params):
      value = _widened(flat_old[path], new)
      if value is None:
        raise errors.UserError(
            f'config.init={init.source!r}: parameter '
            f'{jax.tree_util.keystr(path)} has shape {old_paths[jax.tree_util.keystr(path)]}, '
            f'the model of this config {new_paths[jax.tree_util.keystr(path)]}; '
            'leave the model fields at the values of the model it was '
            'trained as')
      widened[path] = value
    logging.warning('config.init=%s: widened %s with zero weights for the new '
                    'inputs', init.source,
                    ', '.join(k for k in new_paths
                              if new_paths[k] != old_paths[k]))
    params = jax.tree_util.tree_map_with_path(lambda p, _: widened[p],
                                              state.params)
  batch_stats = init.variables.get('batch_stats') or state.batch_stats
  logging.info('Initial weights from %s', init.source)
  as_arrays = lambda tree: jax.tree_util.tree_map(
      lambda x: jnp.asarray(x, jnp.float32), tree)
  return state.replace(params=as_arrays(params),
                       batch_stats=as_arrays(batch_stats))
