"""`xdn-bench --beam`: xdn-beam against xdn-denoise on one folder.

  xdn-bench --mode=beam [--beam_images=16] [--beam_workers=1,2,4]
      [--beam_dask_workers=1,2]

Makes a folder of synthetic radiographs of mixed sizes (512^2 to 2048^2,
half 16-bit PNG, half 12-bit DICOM; smooth anatomy-like ramps with
Gaussian noise; never a real patient's image), denoises it once with
`xdn-denoise` untimed (so that both sides find every program in JAX's
compilation cache, as a second run of either would), then times
`xdn-denoise` and `xdn-beam` on the DirectRunner with
`--direct_running_mode=multi_processing` and 1, 2, 4 ... worker processes,
each a fresh process tree as a user starts it, and on a Dask cluster of 1,
2 ... worker processes (a `dask scheduler` and single-threaded `dask
worker`s on localhost, started for each run; needs the dask extra). Reported per run: wall
seconds, seconds per image and per megapixel, and the peak over the run of
the summed resident memory of the whole process tree (sampled every 0.2 s
with psutil, which Beam installs); for Dask, also the largest peak of one
worker. Each Beam run's outputs are compared
with xdn-denoise's: identical bytes, else the largest pixel difference.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from xdn.bench import dask_cluster
from xdn.bench import synthetic_folder

class _PeakMemory:
  """Peak summed RSS (bytes) of a process and all its descendants."""

  def __init__(self, pid: int):
    import psutil  # pylint: disable=g-import-not-at-top  # Beam's.
    self._root = psutil.Process(pid)
    self._psutil = psutil
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def _sample(self) -> None:
    while not self._stop.is_set():
      try:
        tree = [self._root] + self._root.children(recursive=True)
        total = 0
        for process in tree:
          try:
            total += process.memory_info().rss
          except self._psutil.Error:
            pass
        self.peak = max(self.peak, total)
      except self._psutil.Error:
        pass
      self._stop.wait(0.2)

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    return self.peak


def _timed(command: List[str], workers: Sequence[int] = ()
           ) -> Dict[str, Any]:
  """Runs `command`; its seconds and peak memory, with that of the
  processes `workers` (pids of a cluster's workers) added."""
  start = time.perf_counter()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  memory = [_PeakMemory(pid) for pid in [process.pid, *workers]]
  _, stderr = process.communicate()
  seconds = time.perf_counter() - start
  peaks = [m.stop() for m in memory]
  if process.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed:\n{stderr[-3000:]}')
  # Other work on the machine slows a run: its 1-minute load average at
  # the end tells (about the core count when the run had them to itself).
  result = {'seconds': seconds, 'peak_rss_gb': sum(peaks) / 2**30,
            'load_average': os.getloadavg()[0]}
  if workers:
    result['worker_peak_rss_gb'] = max(peaks[1:]) / 2**30
  return result


def benchmark(images: int = 16, workers: Sequence[int] = (1, 2, 4),
              folder: Optional[str] = None,
              dask_workers: Sequence[int] = ()) -> Dict[str, Any]:
  """Times xdn-denoise and xdn-beam (see the module docstring)."""
  base = folder or tempfile.mkdtemp(prefix='xdn-beam-bench-')
  inputs = os.path.join(base, 'in')
  pixels = synthetic_folder.make(inputs, images)
  python = sys.executable
  cli = lambda out: [python, '-m', 'xdn.cli.denoise', f'--out={out}',
                     '--overwrite', inputs]
  subprocess.run(cli(os.path.join(base, 'warmup')), check=True,
                 capture_output=True)  # Fills the compilation cache.
  runs = []
  reference = os.path.join(base, 'xdn-denoise')
  result = _timed(cli(reference))
  result['run'] = 'xdn-denoise'
  runs.append(result)
  for n in workers:
    out = os.path.join(base, f'beam-{n}')
    result = _timed([python, '-m', 'xdn.beam', f'--input={inputs}',
                     f'--output={out}', '--overwrite',
                     '--direct_running_mode=multi_processing',
                     f'--direct_num_workers={n}'])
    result['run'] = f'xdn-beam, {n} worker process{"es" if n > 1 else ""}'
    result['same_outputs'] = synthetic_folder.compare(out, reference)
    runs.append(result)
  for n in dask_workers:
    out = os.path.join(base, f'dask-{n}')
    cluster_dir = os.path.join(base, f'dask-{n}-cluster')
    os.makedirs(cluster_dir, exist_ok=True)
    cluster = dask_cluster.LocalDaskCluster(cluster_dir, n)
    try:
      result = _timed([python, '-m', 'xdn.beam', f'--input={inputs}',
                       f'--output={out}', '--overwrite',
                       '--runner=DaskRunner',
                       f'--dask_client_address={cluster.address}'],
                      cluster.worker_pids)
    finally:
      cluster.close()
    result['run'] = (f'xdn-beam on Dask, {n} worker'
                     f'{"s" if n > 1 else ""}')
    result['same_outputs'] = synthetic_folder.compare(out, reference)
    runs.append(result)
  for result in runs:
    result['seconds_per_image'] = result['seconds'] / images
    result['seconds_per_megapixel'] = result['seconds'] / (pixels / 1e6)
  return {'images': images, 'megapixels': pixels / 1e6,
          'cpu_count': os.cpu_count(), 'folder': base, 'runs': runs}


def markdown(results: Dict[str, Any]) -> str:
  """The results as the table in docs/beam.md."""
  lines = ['| run | wall s | images / s | s / megapixel | peak RSS (GB, '
           'all processes) | peak RSS of one worker (GB) | load average | '
           'outputs = xdn-denoise |',
           '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
  for r in results['runs']:
    same = r.get('same_outputs')
    same = ('reference' if same is None else
            f'{same["identical"]}/{same["files"]} identical' +
            (f', max diff {same["max_pixel_difference"]:.1e}'
             if same['identical'] < same['files'] else ''))
    worker = r.get('worker_peak_rss_gb')
    lines.append(f'| {r["run"]} | {r["seconds"]:.1f} | '
                 f'{1 / r["seconds_per_image"]:.2f} | '
                 f'{r["seconds_per_megapixel"]:.2f} | '
                 f'{r["peak_rss_gb"]:.2f} | '
                 f'{"" if worker is None else f"{worker:.2f}"} | '
                 f'{r.get("load_average", 0):.1f} | {same} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  out = benchmark()
  print(json.dumps(out, indent=1))
  print(markdown(out))
