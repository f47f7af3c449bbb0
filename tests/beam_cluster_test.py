"""xdn-beam where the pipeline leaves the submitting process.

Two engines that run for real on one machine:
- Dask: a `dask scheduler` and two `dask worker` processes talking over
  TCP on localhost ports they pick (what dask-jobqueue starts on Slurm),
  driven by Beam's DaskRunner (`--runner=DaskRunner
  --dask_client_address=...`). A worker is also killed with SIGKILL in
  the middle of a run.
- Beam's portable runner: the Python local job service and an external
  SDK worker pool, so the pipeline crosses the Fn API (the path the Flink
  and Spark job servers drive) and the model loads in the worker.

Each run's outputs must be `xdn-denoise`'s byte for byte, with the corrupt
file in the dead letters and the results table complete. Needs the beam
and dask extras (`pip install "xdn[beam,dask]"`).
"""

import csv
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip('apache_beam')
pytest.importorskip('distributed')
# pylint: disable=g-import-not-at-top,wrong-import-position
from tests import beam_fixtures as bf
from xdn.bench import dask_cluster
from xdn.io import images as image_io

STARTUP_SECONDS = dask_cluster.STARTUP_SECONDS


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(args, log: pathlib.Path, **kwargs) -> subprocess.Popen:
  # PATH first holds this interpreter's folder: Beam's worker pool starts
  # its SDK workers as `python`.
  env = bf.environment()
  env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get(
      'PATH', '')
  with open(log, 'w') as f:
    return subprocess.Popen([sys.executable, *args], stdout=f,
                            stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, **kwargs)


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
  return bf.make_archive(tmp_path_factory.mktemp('archive'), twins=False)


@pytest.fixture(scope='module')
def reference(archive, tmp_path_factory):
  """xdn-denoise's outputs of the archive."""
  out = tmp_path_factory.mktemp('cli') / 'out'
  cli = bf.run(['-m', 'xdn.cli.denoise', f'--out={out}',
                '--precision=float32', str(archive)], out.parent)
  assert cli.returncode == 1, cli.stderr[-3000:]  # broken.png.
  return bf.outputs(out)


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
  cluster = dask_cluster.LocalDaskCluster(
      str(tmp_path_factory.mktemp('dask')), 2, env=bf.environment())
  yield cluster
  cluster.close()


def _check_run(result, out: pathlib.Path, archive: pathlib.Path,
               reference: dict) -> None:
  """Outputs = xdn-denoise's, the corrupt file a dead letter, the results
  table one row per good input."""
  assert result.returncode == 1, result.stderr[-3000:]  # broken.png.
  written = bf.outputs(out)
  assert sorted(written) == ['a.png', 'sub/b.png', 'sub/c.dcm']
  for name, data in written.items():
    assert data == reference[name], name  # Pixels and DICOM header.
  lines = (out / 'xdn_failed.txt').read_text().splitlines()
  assert [line.split('\t')[0] for line in lines] == [
      str(archive / 'broken.png')]
  assert 'cannot decode' in lines[0]
  with open(out / 'xdn_results.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert sorted(r['input'] for r in rows) == [
      str(archive / n) for n in ('a.png', 'sub/b.png', 'sub/c.dcm')]
  assert {r['status'] for r in rows} == {'written'}
  assert 'failed' in result.stderr and '3 written' in result.stderr


def test_dask_cluster_outputs_equal_xdn_denoise(archive, reference, cluster,
                                                tmp_path):
  out = tmp_path / 'out'
  result = bf.run(['-m', 'xdn.beam', f'--input={archive}', f'--output={out}',
                   '--precision=float32', '--runner=DaskRunner',
                   f'--dask_client_address={cluster.address}'], tmp_path)
  _check_run(result, out, archive, reference)
  # The model loaded in the workers, never in the submitting process
  # (which would log it: `XdnModelHandler.load_model`).
  assert 'Model xdn-pretrained' not in result.stderr


def test_dask_worker_killed_mid_run_then_one_rerun(cluster, tmp_path):
  """SIGKILL one of two workers once the first output exists: after the
  run (its tasks rescheduled, or the run failed) and at most one rerun
  with --skip_existing, exactly one whole output per input, no temporary
  file, none lost."""
  folder = tmp_path / 'in'
  folder.mkdir()
  count = 16
  for i in range(count):
    size = 320 + 32 * (i % 4)
    (folder / f'{i:02d}.png').write_bytes(image_io.encode_png(
        bf.noisy(size, size, 255, i).astype(np.uint8)))
  out = tmp_path / 'out'
  args = ['-m', 'xdn.beam', f'--input={folder}', f'--output={out}',
          '--precision=float32', '--runner=DaskRunner', '--skip_existing',
          f'--dask_client_address={cluster.address}']
  process = subprocess.Popen([sys.executable, *args], cwd=str(tmp_path),
                             env=bf.environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (
        bf.outputs(out)):
      time.sleep(0.05)
    done_before = len(bf.outputs(out))
    cluster.kill('w1')
    _, stderr = process.communicate(timeout=600)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
    cluster.add_worker('w2')  # For the rerun and later tests.
  assert 0 < done_before < count, f'{done_before} written before the kill'
  first = process.returncode
  if first != 0 or len(bf.outputs(out)) < count:
    rerun = bf.run(args, tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
  written = bf.outputs(out)
  assert sorted(written) == [f'{i:02d}.png' for i in range(count)], (
      first, stderr[-2000:])
  for i, name in enumerate(sorted(written)):  # Each whole: it decodes.
    size = 320 + 32 * (i % 4)
    assert image_io.read_grayscale(out / name).shape == (size, size)
  assert bf.temporaries(out) == []
  with open(out / 'xdn_results.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  assert sorted(r['input'] for r in rows) == sorted(
      str(folder / f'{i:02d}.png') for i in range(count)), (
          first, [(r['input'][-6:], r['status']) for r in rows],
          stderr[-3000:])
  assert (out / 'xdn_failed.txt').read_text() == ''


def test_portable_runner_with_an_external_worker_pool(archive, reference,
                                                      tmp_path):
  job_port, pool_port = _free_port(), _free_port()
  job = _start(['-m', 'apache_beam.runners.portability.'
                'local_job_service_main', f'--port={job_port}'],
               tmp_path / 'job.log')
  pool = _start(['-m', 'apache_beam.runners.worker.worker_pool_main',
                 f'--service_port={pool_port}'], tmp_path / 'pool.log')
  try:
    deadline = time.time() + STARTUP_SECONDS
    while not ('Listening for beam jobs' in (tmp_path / 'job.log').read_text()
               and 'Started worker pool' in (tmp_path / 'pool.log')
               .read_text()):
      assert time.time() < deadline, 'the job service or pool did not start'
      time.sleep(0.2)
    out = tmp_path / 'out'
    result = bf.run(['-m', 'xdn.beam', f'--input={archive}',
                     f'--output={out}', '--precision=float32',
                     '--runner=PortableRunner',
                     f'--job_endpoint=localhost:{job_port}',
                     '--environment_type=EXTERNAL',
                     f'--environment_config=localhost:{pool_port}'],
                    tmp_path, timeout=600)
    _check_run(result, out, archive, reference)
    # The model loaded in an SDK worker the pool started, not here.
    assert 'Starting worker with command' in (tmp_path /
                                              'pool.log').read_text()
    assert 'Model xdn-pretrained' not in result.stderr
  finally:
    dask_cluster.stop(job)
    dask_cluster.stop(pool)
