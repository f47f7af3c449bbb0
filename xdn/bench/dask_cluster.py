"""A Dask cluster on this machine, for the Beam benchmark and tests.

A `dask scheduler` and named single-threaded `dask worker` processes on
localhost ports they pick (what dask-jobqueue starts on Slurm), each
logging to its own file in `folder`. Workers run without a nanny: a killed
worker stays dead, as a lost node does. Needs the dask extra.
"""

import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

STARTUP_SECONDS = 120


class LocalDaskCluster:
  """The scheduler and `workers` workers (named w0, w1, ...); `env`: the
  processes' environment (None: this one's)."""

  def __init__(self, folder: str, workers: int = 2,
               env: Optional[Dict[str, str]] = None):
    self.folder = folder
    self._env = env
    self._scheduler_file = os.path.join(folder, 'scheduler.json')
    self._scheduler = self._start(
        ['distributed.cli.dask_scheduler', '--host', '127.0.0.1', '--port',
         '0', '--dashboard-address', ':0', '--scheduler-file',
         self._scheduler_file], 'scheduler')
    self.workers: Dict[str, subprocess.Popen] = {}
    self._wait_for(lambda: os.path.exists(self._scheduler_file),
                   'the scheduler')
    for i in range(workers):
      self.add_worker(f'w{i}')

  @property
  def address(self) -> str:
    with open(self._scheduler_file) as f:
      return json.load(f)['address']

  @property
  def worker_pids(self) -> List[int]:
    return [p.pid for p in self.workers.values() if p.poll() is None]

  def _log(self, name: str) -> str:
    return os.path.join(self.folder, f'{name}.log')

  def _start(self, args: List[str], name: str) -> subprocess.Popen:
    with open(self._log(name), 'w') as log:
      return subprocess.Popen([sys.executable, '-m', *args], stdout=log,
                              stderr=subprocess.STDOUT, env=self._env,
                              start_new_session=True)

  def add_worker(self, name: str) -> None:
    """Starts one more worker and waits until the scheduler has it."""
    self.workers[name] = self._start(
        ['distributed.cli.dask_worker', self.address, '--name', name,
         '--nthreads', '1', '--no-nanny', '--dashboard-address', ':0',
         '--local-directory', os.path.join(self.folder, name)], name)

    def registered() -> bool:
      with open(self._log(name)) as f:
        return 'Registered to' in f.read()
    self._wait_for(registered, f'worker {name}')

  def _wait_for(self, ready, what: str) -> None:
    deadline = time.time() + STARTUP_SECONDS
    while not ready():
      if time.time() > deadline or self._scheduler.poll() is not None:
        raise RuntimeError(f'{what} did not start; see {self.folder}')
      time.sleep(0.2)

  def kill(self, name: str) -> None:
    """SIGKILL of one worker, as a node lost."""
    os.kill(self.workers[name].pid, signal.SIGKILL)
    self.workers[name].wait(timeout=60)

  def close(self) -> None:
    for process in [*self.workers.values(), self._scheduler]:
      stop(process)


def stop(process: subprocess.Popen) -> None:
  """SIGKILL of a process started in its own session, and its children."""
  if process.poll() is None:
    try:
      os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  process.wait(timeout=60)
