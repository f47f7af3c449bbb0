"""Checkpoints of a training run, with orbax.

Layout of a workdir:
  config.json          the run's config (read back by evaluate and denoise)
  checkpoints/<step>/  the last `keep_checkpoints` training states
  best/<step>/         the state with the best eval PSNR so far

States are saved as host (numpy) arrays of one replica, so a checkpoint does
not depend on the number of devices that wrote it. Orbax writes each
checkpoint to a temporary folder (`<step>.orbax-checkpoint-tmp-<time>`) and
renames it to `<step>` when complete, so a run killed mid-write leaves no
checkpoint that looks valid: the next run resumes from the previous one (and
a training run deletes such leftovers when it starts).

With several processes (multi-host) every process calls `save` and
`save_best` (they are collective); only process 0 writes the arrays.
"""

import json
import logging as pylogging
import os
import shutil
from typing import Any, Dict, Optional

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from xdn import errors

LATEST, BEST = 'checkpoints', 'best'
CONFIG_FILE = 'config.json'
# Config fields that make a different kind of state: a checkpoint written
# under other values cannot be resumed. Other model fields are checked by
# what they change, the shapes of the arrays (`Checkpointer.restore`).
_STATE_FIELDS = ('model.name', 'optimizer.name')
# Orbax writes `<step>.orbax-checkpoint-tmp[-<time>]` and renames it `<step>`
# when the checkpoint is complete.
_UNFINISHED = '.orbax-checkpoint-tmp'



def _is_not_orbax_info(record: pylogging.LogRecord) -> bool:
  return (record.levelno >= pylogging.WARNING
          or f'{os.sep}orbax{os.sep}' not in record.pathname)


def quiet_orbax_logs() -> None:
  """Drops orbax's INFO chatter about every save and restore from the absl
  log (its warnings and errors stay). For command-line entry points."""
  handler = logging.get_absl_handler()
  if _is_not_orbax_info not in handler.filters:
    handler.addFilter(_is_not_orbax_info)

def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Saves the config beside the checkpoints (atomically)."""
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.UserError(
        f'{path} not found: {workdir!r} is not an xdn training workdir; '
        'name the workdir of a training run (run.py, xdn-train)')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def check_compatible(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises if `workdir` holds checkpoints of a differently shaped model."""
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved = read_config(workdir)
  for field in _STATE_FIELDS:
    old, new = saved.get(field), config.get(field)
    if old != new:
      raise errors.UserError(
          f'workdir {workdir!r} holds a run with a different {field} '
          f'({old} vs now {new}); use a new --workdir, or the same config '
          'to resume that run')


def _remove_unfinished(folder: str) -> None:
  """Deletes checkpoints a stopped run left half-written in `folder`.

  orbax's own `cleanup_tmp_directories` (also on) was measured to leave a
  `<step>.orbax-checkpoint-tmp` folder in place (tests/faults_test.py), so
  xdn removes what it recognises itself.
  """
  if not os.path.isdir(folder):
    return
  for name in sorted(os.listdir(folder)):
    if _UNFINISHED in name:
      logging.warning('Removing unfinished checkpoint %s (a run stopped '
                      'while writing it).', os.path.join(folder, name))
      shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _leaf(tree: Any, path) -> Any:
  for key in path:
    tree = tree[getattr(key, 'key', getattr(key, 'idx', None))]
  return tree


def _barrier_prefix(name: str) -> ocp.options.MultiprocessingOptions:
  # Multi-host saves synchronise processes with barriers named by step: the
  # two managers save the same steps, so their barriers need distinct names.
  return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


class Checkpointer:
  """Saves and restores training states (as nested dicts of arrays)."""

  def __init__(self, workdir: str, keep: int = 3, *,
               cleanup_tmp: bool = False):
    """Opens (creating if needed) the checkpoints of `workdir`.

    Args:
      workdir: the training workdir.
      keep: how many of the latest checkpoints to keep.
      cleanup_tmp: delete unfinished checkpoints left by a killed run. Only
        the training run may do this: a reader (evaluate, denoise) of a live
        workdir would delete the checkpoint being written.
    """
    self.workdir = os.path.abspath(workdir)
    if cleanup_tmp and jax.process_index() == 0:
      for folder in (LATEST, BEST):
        _remove_unfinished(os.path.join(self.workdir, folder))
    self._latest = ocp.CheckpointManager(
        os.path.join(self.workdir, LATEST),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            cleanup_tmp_directories=cleanup_tmp,
            multiprocessing_options=_barrier_prefix(LATEST)))
    self._best = ocp.CheckpointManager(
        os.path.join(self.workdir, BEST),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda m: m['psnr'],
            best_mode='max', keep_checkpoints_without_metrics=False,
            cleanup_tmp_directories=cleanup_tmp,
            multiprocessing_options=_barrier_prefix(BEST)))

  def _manager(self, which: str) -> ocp.CheckpointManager:
    if which not in (LATEST, BEST, 'latest', 'best'):
      raise errors.UserError(f"checkpoint must be 'latest' or 'best', got {which!r}")
    return self._best if which in (BEST, 'best') else self._latest

  def latest_step(self, which: str = 'latest') -> Optional[int]:
    return self._manager(which).latest_step()

  def save(self, step: int, state: Dict[str, Any]) -> None:
    """Saves the latest state; waits for the write to complete on exit.

    A step already saved is left as it is: a resumed run repeats the steps
    after its checkpoint exactly, so the state would be the same.
    """
    if step not in self._latest.all_steps():
      self._latest.save(step, args=ocp.args.StandardSave(state))

  def save_best(self, step: int, state: Dict[str, Any], psnr: float) -> None:
    """Offers a state as the best; orbax keeps it if its PSNR is highest.

    A run killed after saving the best state of a step but before its
    latest checkpoint repeats that step when resumed: the best state it
    already has is kept (it is the same, as resumed steps are exact).
    """
    if step not in self._best.all_steps():
      self._best.save(step, args=ocp.args.StandardSave(state),
                      metrics={'psnr': float(psnr)})

  def restore(self, target: Optional[Dict[str, Any]], which: str = 'latest',
              step: Optional[int] = None) -> Dict[str, Any]:
    """Restores the state at `step` (default: the newest / best one).

    `target` (a state dict of arrays) gives the expected structure, shapes
    and dtypes; None restores the arrays as saved (numpy).
    """
    manager = self._manager(which)
    if step is None:
      step = manager.best_step() if manager is self._best else None
      step = step if step is not None else manager.latest_step()
    if step is None:
      raise errors.UserError(f'no {which} checkpoint in {self.workdir}')
    abstract = (None if target is None else
                jax.tree.map(ocp.utils.to_shape_dtype_struct, target))
    mismatch = lambda why: ValueError(
        f'checkpoint {step} in {self.workdir} does not match this model '
        f'and config ({why}); use a new --workdir or the config that wrote '
        'it')
    try:
      restored = manager.restore(step,
                                 args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise mismatch(f'{type(e).__name__}: '
                     f'{str(e).splitlines()[0][:200]}') from None
    if target is not None:
      # Orbax restores a same-named array of another shape as saved; that
      # would fail later with an obscure shape error.
      for path, want in jax.tree_util.tree_leaves_with_path(abstract):
        got, want = np.shape(_leaf(restored, path)), np.shape(want)
        if got != want:
          raise mismatch(f'{jax.tree_util.keystr(path)} has shape {got} in '
                         f'the checkpoint, {want} here')
    return restored

  def wait(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self._latest.close()
    self._best.close()
