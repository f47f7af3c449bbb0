"""Exact resume: SIGKILL, half-written checkpoints, SIGTERM, device counts.

Each test runs the real command, `python run.py ...`, in a subprocess.
"""

import os
import re
import shutil
import signal

import numpy as np
import pytest

from tests import reliability_utils as ru
from tests.reliability_utils import compile_cache  # pylint: disable=unused-import  # Fixture.

STEPS = 24
DEVICES = 2


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, sample_data_dir, compile_cache):
  """Workdir of a run of STEPS steps on DEVICES devices, never interrupted."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  ru.run(workdir, sample_data_dir, f'--config.num_train_steps={STEPS}',
         devices=DEVICES, cache=compile_cache)
  assert ru.finished_steps(workdir)[-1] == STEPS
  return workdir


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_sigkill_then_rerun_ends_bit_identical(tmp_path, sample_data_dir,
                                               compile_cache, uninterrupted):
  workdir, log = str(tmp_path / 'killed'), str(tmp_path / 'killed.log')
  args = (workdir, sample_data_dir, f'--config.num_train_steps={STEPS}')
  process = ru.start(*args, devices=DEVICES, cache=compile_cache, log=log)
  # Kill as soon as a checkpoint after the first eval is complete: the run
  # is then mid-training, with saves (latest and best) likely in flight.
  ru.wait_for(lambda: any(s >= 6 for s in ru.finished_steps(workdir)),
              process, log)
  process.send_signal(signal.SIGKILL)
  assert process.wait(timeout=60) == -signal.SIGKILL
  killed_at = ru.finished_steps(workdir)[-1]
  assert killed_at < STEPS, 'the run ended before it was killed'

  # A checkpoint interrupted mid-write, as a kill during a save leaves it
  # (orbax's temporary name, half of its files): never picked up.
  source = os.path.join(workdir, 'checkpoints', str(killed_at))
  partial = os.path.join(workdir, 'checkpoints',
                         f'{killed_at + 2}.orbax-checkpoint-tmp')
  shutil.rmtree(partial, ignore_errors=True)
  shutil.copytree(source, partial)
  for root, _, files in os.walk(partial):
    for name in files[::2]:
      os.remove(os.path.join(root, name))

  result = ru.run(*args, devices=DEVICES, cache=compile_cache)
  assert f'at step {killed_at}' in result.stderr  # 'Resumed from W at step'
  assert not os.path.exists(partial)  # Cleaned up when the run started.
  assert ru.finished_steps(workdir) == ru.finished_steps(uninterrupted)

  # Parameters, optimizer state, BatchNorm statistics and step counters:
  # byte for byte those of the uninterrupted run, for the last and the best.
  ru.assert_bytes_equal(ru.saved_state(workdir),
                        ru.saved_state(uninterrupted))
  assert (ru.finished_steps(workdir, 'best') ==
          ru.finished_steps(uninterrupted, 'best'))
  ru.assert_bytes_equal(ru.saved_state(workdir, 'best'),
                        ru.saved_state(uninterrupted, 'best'))


def test_sigterm_saves_and_resumes_on_another_device_count(
    tmp_path, sample_data_dir, compile_cache):
  workdir, log = str(tmp_path / 'run'), str(tmp_path / 'run.log')
  args = (workdir, sample_data_dir, f'--config.num_train_steps={STEPS}')
  # Four devices, then two: batch_size=8 divides both.
  process = ru.start(*args, devices=4, cache=compile_cache, log=log)
  ru.wait_for(lambda: ru.finished_steps(workdir), process, log)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=60) == 0
  with open(log) as f:
    text = f.read()
  assert 'Received SIGTERM: saving a checkpoint, then stopping;' in text
  stopped = int(re.search(r'Stopped at step (\d+); rerun the same command '
                          'to resume', text).group(1))
  assert stopped < STEPS
  assert ru.finished_steps(workdir)[-1] == stopped  # Saved where it stopped.

  result = ru.run(*args, devices=DEVICES, cache=compile_cache)
  assert f'at step {stopped}' in result.stderr
  assert ru.finished_steps(workdir)[-1] == STEPS
  state = ru.saved_state(workdir)
  assert int(state['step']) == STEPS
  assert all(np.isfinite(v).all() for v in state.values())
