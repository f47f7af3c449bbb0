"""Trains an xdn denoiser: `xdn-train --config=configs/vae.py --workdir=W`
(the same as `python run.py ...` in a checkout).

Every config field can be overridden: `--config.num_train_steps=100`.
Rerunning the same command resumes from the latest checkpoint in W. Where
`--config` names no file that exists (`--config=configs/unet.py:quick` run
outside a checkout, or `--config=unet.py`), the config of that name
installed with xdn (`xdn.configs`) is used.
"""

import os
import sys
from typing import List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from xdn.cli import shared
from xdn import errors
from xdn.runtime import compile_cache
from xdn.runtime import xla_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file(
      'config', 'configs/default.py', 'Training configuration file, with '
      'its argument after a colon (configs/unet.py:quick); a name such as '
      'unet.py is looked up in the configs installed with xdn.',
      lock_config=True)
  flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and '
                      'sample images are written (and resumed from).')
  flags.mark_flags_as_required(['workdir'])


def installed_config(path: str) -> Optional[str]:
  """The installed `xdn.configs` file of the same name as `path`, where
  `path` (before its ':ARG') is not a file; None if there is none."""
  file_part, _, arg = path.partition(':')
  if os.path.isfile(file_part):
    return None
  from xdn import configs  # pylint: disable=g-import-not-at-top
  candidate = os.path.join(os.path.dirname(configs.__file__),
                           os.path.basename(file_part))
  if not candidate.endswith('.py'):
    candidate += '.py'
  if not os.path.isfile(candidate):
    return None
  return candidate + (f':{arg}' if arg else '')


def resolve_config_argument(argv: Sequence[str]) -> List[str]:
  """argv with a --config that names no file replaced by the installed
  config of that name (flags are parsed later, so this runs first)."""
  resolved = []
  for arg in argv:
    if arg.startswith('--config='):
      found = installed_config(arg[len('--config='):])
      if found:
        arg = f'--config={found}'
    resolved.append(arg)
  if '--config' not in resolved and not any(
      a.startswith('--config=') for a in resolved):
    resolved.append(f'--config={installed_config("default.py")}'
                    if not os.path.isfile('configs/default.py') else
                    '--config=configs/default.py')
  return resolved


def initialize_distributed(config) -> None:
  """Joins the processes of a multi-host run (config.distributed).

  Fields left at '' / -1 come from the cluster environment (SLURM, TPU pods,
  or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
  """
  # CPU-only hosts need a cross-process collectives backend; GPUs and TPUs
  # ignore this setting.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(
        coordinator_address=config.coordinator_address or None,
        num_processes=(config.num_processes
                       if config.num_processes > 0 else None),
        process_id=config.process_id if config.process_id >= 0 else None)
  except (ValueError, RuntimeError) as e:
    raise errors.UserError(
        f'cannot start multi-host JAX ({str(e).splitlines()[0]}); set '
        '--config.coordinator_address=HOST:PORT of process 0, '
        '--config.num_processes and --config.process_id on every process'
    ) from None


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from xdn.training import train  # pylint: disable=g-import-not-at-top
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  checkpoints.quiet_orbax_logs()
  xla_flags.configure_xla_cpu(training=True)  # Before the first JAX call.
  config = FLAGS.config
  if config.distributed:
    compile_cache.disable('a multi-process run (its processes can hang on '
                          'programs found in the cache)')
    initialize_distributed(config)
  else:
    compile_cache.enable()  # A resumed run compiles nothing it compiled before.
  logging.info('JAX process %d of %d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  # Problems with the user's config, data or workdir: one clear line
  # (shared.run). Anything else is a bug and keeps its traceback.
  train.train_and_evaluate(config, FLAGS.workdir)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-train) and run.py's."""
  sys.argv[1:] = resolve_config_argument(sys.argv[1:])
  shared.run(main, define_flags)
