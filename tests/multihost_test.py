"""Multi-host: two local CPU processes, a coordinator on 127.0.0.1.

Each process has one CPU device; jax.distributed joins them (CPU collectives
through gloo) into one pmap over two devices. Each reads its own half of
every batch, only process 0 writes logs, images and checkpoint files, and
both save checkpoints collectively.
"""

import glob
import os
import signal
import socket
import subprocess

import numpy as np
import pytest

from tests import reliability_utils as ru
from tests.reliability_utils import compile_cache  # pylint: disable=unused-import  # Fixture.
from xdn.data import pipeline

STEPS = 8


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_two(tmp_path, data_dir, cache, *overrides):
  """Starts the two processes of one run; (processes, their log files)."""
  address = f'127.0.0.1:{free_port()}'
  processes, logs = [], []
  for pid in range(2):
    logs.append(str(tmp_path / f'process{pid}.log'))
    cmd = ru.command(
        str(tmp_path / 'run'), data_dir, *overrides,
        '--config.distributed=True', f'--config.coordinator_address={address}',
        '--config.num_processes=2', f'--config.process_id={pid}',
        script=('tests/multihost_worker.py', str(tmp_path / f'{pid}.npz')))
    with open(logs[-1], 'w') as f:
      processes.append(subprocess.Popen(cmd, cwd=ru.REPO,
                                        env=ru.env(1, cache),
                                        stdout=f, stderr=subprocess.STDOUT))
  return processes, logs


def wait_all(processes, logs, timeout: float = 300) -> None:
  """Waits for every process; fails with the log of one that failed."""
  try:
    codes = [p.wait(timeout=timeout) for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  for code, log in zip(codes, logs):
    with open(log) as f:
      assert code == 0, f.read()[-4000:]


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_two_processes_train_to_identical_parameters(tmp_path, sample_data_dir,
                                                     compile_cache):
  workdir = str(tmp_path / 'run')
  processes, logs = start_two(tmp_path, sample_data_dir, compile_cache,
                              f'--config.num_train_steps={STEPS}')
  wait_all(processes, logs)

  out = [np.load(tmp_path / f'{pid}.npz') for pid in range(2)]
  assert [int(o['process_index']) for o in out] == [0, 1]
  assert [int(o['process_count']) for o in out] == [2, 2]
  assert [int(o['step']) for o in out] == [STEPS, STEPS]
  names = [n for n in out[0].files
           if n not in ('process_index', 'process_count', 'step')]
  ru.assert_bytes_equal({n: out[0][n] for n in names},
                        {n: out[1][n] for n in names})
  # The collective checkpoint (written by process 0) holds the same.
  saved = ru.saved_state(workdir)
  ru.assert_bytes_equal({n: saved[f'params/{n}'] for n in names},
                        {n: out[1][n] for n in names})
  assert ru.finished_steps(workdir)[-1] == STEPS
  assert ru.finished_steps(workdir, 'best')
  # Only process 0 writes metrics and images.
  assert len(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))) == 1
  assert os.path.exists(os.path.join(workdir, 'samples',
                                     f'denoise_{STEPS:07d}.png'))


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_sigterm_to_one_process_stops_both_at_one_step(
    tmp_path, sample_data_dir, compile_cache):
  """A scheduler preempting one host: both stop cleanly at the same step."""
  workdir = str(tmp_path / 'run')
  sync = 5  # log_every_steps: the processes agree on a stop every 5 steps.
  processes, logs = start_two(tmp_path, sample_data_dir, compile_cache,
                              '--config.num_train_steps=100000',
                              f'--config.log_every_steps={sync}')
  ru.wait_for(lambda: ru.finished_steps(workdir), processes[0], logs[0])
  processes[1].send_signal(signal.SIGTERM)  # The non-chief only.
  wait_all(processes, logs, timeout=120)
  out = [np.load(tmp_path / f'{pid}.npz') for pid in range(2)]
  stopped = int(out[0]['step'])
  assert int(out[1]['step']) == stopped < 100000
  assert stopped % sync == 0
  names = [n for n in out[0].files
           if n not in ('process_index', 'process_count', 'step')]
  ru.assert_bytes_equal({n: out[0][n] for n in names},
                        {n: out[1][n] for n in names})
  # One checkpoint of the stop step, written collectively, holds the same.
  assert ru.finished_steps(workdir)[-1] == stopped
  saved = ru.saved_state(workdir)
  ru.assert_bytes_equal({n: saved[f'params/{n}'] for n in names},
                        {n: out[0][n] for n in names})
  with open(logs[0]) as f:
    chief = f.read()
  assert (f'Process 1 received SIGTERM: every process saves a checkpoint at '
          f'step {stopped}, then stops.') in chief
  assert f'Stopped at step {stopped}; rerun the same command' in chief


def test_each_process_reads_its_own_shard(sample_data_dir):
  config = data_config(sample_data_dir)
  whole = pipeline.train_batches(config, global_batch_size=8, num_devices=2,
                                 seed=3, start_step=5)
  halves = [pipeline.train_batches(config, global_batch_size=8,
                                   num_devices=1, seed=3, start_step=5,
                                   process_index=p, process_count=2)
            for p in range(2)]
  for _ in range(3):
    batch = next(whole)  # [2 devices, 4, H, W, 1]
    for p, half in enumerate(halves):
      np.testing.assert_array_equal(next(half)[0], batch[p])


def data_config(data_dir):
  from xdn.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.data.data_dir = data_dir
  return config.data
