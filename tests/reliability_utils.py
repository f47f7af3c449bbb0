"""Helpers for the reliability tests (resume, faults, multi-host).

Runs of the real command `python run.py ...` on the embedded sample, small
enough for the default test run: the autoencoder, 8 images a step, a few
eval images. Subprocesses share a persistent XLA compilation cache, so only
the first run of each program shape pays for compiling it.
"""

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import flax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'autoencoder.py')
# Checkpoints every 2 steps, evals (and best checkpoints) every 3: a kill can
# fall between the best and the latest checkpoint of a step.
SMALL = ('--config.batch_size=8', '--config.log_every_steps=2',
         '--config.eval_every_steps=3', '--config.checkpoint_every_steps=2',
         '--config.data.num_eval_images=8', '--config.num_sample_images=2')


@pytest.fixture(scope='session')
def compile_cache(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp('xla_cache'))


def env(devices: int, cache: str) -> Dict[str, str]:
  """Environment of a subprocess with `devices` CPU devices."""
  out = dict(os.environ)
  out['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  out['JAX_COMPILATION_CACHE_DIR'] = cache
  out['TF_CPP_MIN_LOG_LEVEL'] = '2'
  out['PYTHONUNBUFFERED'] = '1'
  return out


def command(workdir: str, data_dir: str, *overrides: str,
            script: Sequence[str] = ('run.py',)) -> List[str]:
  return [sys.executable, *[os.path.join(REPO, s) if s.endswith('.py') else s
                            for s in script],
          f'--config={CONFIG}', f'--workdir={workdir}',
          f'--config.data.data_dir={data_dir}', *SMALL, *overrides]


def start(workdir, data_dir, *overrides, devices, cache,
          log: str) -> subprocess.Popen:
  """Starts `run.py` in the background, stdout and stderr to `log`."""
  with open(log, 'w') as f:
    return subprocess.Popen(command(workdir, data_dir, *overrides), cwd=REPO,
                            env=env(devices, cache), stdout=f,
                            stderr=subprocess.STDOUT)


def run(workdir, data_dir, *overrides, devices, cache,
        check: bool = True) -> subprocess.CompletedProcess:
  """Runs `run.py` to completion."""
  result = subprocess.run(command(workdir, data_dir, *overrides), cwd=REPO,
                          env=env(devices, cache), capture_output=True,
                          text=True, timeout=300)
  if check:
    assert result.returncode == 0, result.stderr[-4000:]
  return result


def finished_steps(workdir: str, folder: str = 'checkpoints') -> List[int]:
  """Steps of the finalised checkpoints (orbax writes `<step>` only when
  complete; unfinished ones are `<step>.orbax-checkpoint-tmp...`)."""
  path = os.path.join(workdir, folder)
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def wait_for(predicate, process: subprocess.Popen, log: str,
             timeout: float = 240.0) -> None:
  """Polls `predicate` until true; fails if the process ends first."""
  deadline = time.time() + timeout
  while not predicate():
    if process.poll() is not None:
      with open(log) as f:
        pytest.fail(f'run ended (rc {process.returncode}) before the '
                    f'awaited state:\n{f.read()[-4000:]}')
    if time.time() > deadline:
      process.send_signal(signal.SIGKILL)
      pytest.fail('timed out waiting for a checkpoint')
    time.sleep(0.02)


def saved_state(workdir: str, which: str = 'latest',
                step: Optional[int] = None) -> Dict[str, np.ndarray]:
  """A checkpoint as saved: {'params/...': numpy array, ...}."""
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  ckpt = checkpoints.Checkpointer(workdir)
  try:
    state = ckpt.restore(None, which, step)
  finally:
    ckpt.close()
  return flax.traverse_util.flatten_dict(state, sep='/')


def assert_bytes_equal(a: Dict[str, np.ndarray],
                       b: Dict[str, np.ndarray]) -> None:
  assert sorted(a) == sorted(b)
  for name in a:
    x, y = np.asarray(a[name]), np.asarray(b[name])
    assert x.dtype == y.dtype and x.shape == y.shape, name
    assert x.tobytes() == y.tobytes(), f'{name} differs'
