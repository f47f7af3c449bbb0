"""One process of the 2-process test in multihost_test.py (not a test).

  python tests/multihost_worker.py OUT.npz --workdir=W --config=... \
      --config.distributed=True --config.coordinator_address=127.0.0.1:PORT \
      --config.num_processes=2 --config.process_id=I

Does what `run.py` does (same flags, same distributed set-up, same
`train_and_evaluate`) and then saves this process's final parameters to
OUT.npz, so the test can compare the processes.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import flax
import jax
import numpy as np

from xdn.cli import train as train_cli  # pylint: disable=g-import-not-at-top
from xdn.runtime import compile_cache
from xdn.runtime import xla_flags
from xdn.training import train
from xdn.workdir import checkpoints


def main(argv):
  out = argv[1]
  checkpoints.quiet_orbax_logs()  # As run.py's main.
  xla_flags.configure_xla_cpu(training=True)
  config = flags.FLAGS.config
  # As run.py: no compilation cache in a multi-process run, even with the
  # JAX_COMPILATION_CACHE_DIR the test sets (a cache filled by the test
  # before made jaxlib 0.12's processes hang in their first collective).
  compile_cache.disable('multi-process run')
  train_cli.initialize_distributed(config)
  state = train.train_and_evaluate(config, flags.FLAGS.workdir)
  params = flax.traverse_util.flatten_dict(
      flax.serialization.to_state_dict(jax.device_get(state.params)), sep='/')
  np.savez(out, process_index=jax.process_index(),
           process_count=jax.process_count(),
           step=int(state.step), **params)


if __name__ == '__main__':
  train_cli.define_flags()  # As run.py.
  app.run(main)
