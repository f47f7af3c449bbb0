"""Trains an xdn denoiser: `python run.py --config=configs/vae.py --workdir=W`.

Every config field can be overridden: `--config.num_train_steps=100`.
Rerunning the same command resumes from the latest checkpoint in W.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from xdn.workdir import checkpoints
from xdn.runtime import compile_cache
from xdn import errors
from xdn.training import train
from xdn.runtime import xla_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    'config', 'configs/default.py', 'Training configuration file.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and sample '
                    'images are written (and resumed from).')
flags.mark_flags_as_required(['workdir'])


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
    raise SystemExit(
        f'error: cannot start multi-host JAX ({str(e).splitlines()[0]}); set '
        '--config.coordinator_address=HOST:PORT of process 0, '
        '--config.num_processes and --config.process_id on every process') \
        from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
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
  try:
    train.train_and_evaluate(config, FLAGS.workdir)
  except errors.UserError as e:
    # Problems with the user's config, data or workdir: one clear line.
    # Anything else is a bug and keeps its traceback.
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  app.run(main)
