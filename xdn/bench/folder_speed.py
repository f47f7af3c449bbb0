"""`xdn-bench --folder`: whole `xdn-denoise` processes, as a user runs them.

  xdn-bench --folder [--folder_images=16] \
      [--folder_sizes=1024,1760x2140,2048,2500] [--rounds=3] \
      [--denoise_flags=--precision=float32,--strength=full] [--baseline=DIR]

Makes a folder of synthetic radiographs (`synthetic_folder.make`: half
16-bit PNG, half 12-bit DICOM) and times `python -m xdn.cli.denoise` over it as
fresh processes: first with an empty compilation cache folder (a user's
first run), then `rounds` times with it filled (every later run). Each run
is reported with its wall seconds, images per second and peak resident
memory (the process's own, from wait4). `--denoise_flags` go to every
xdn-denoise run (both sides': flags an older checkout knows).

`--baseline=DIR` times another xdn checkout the same way (a git worktree
of an older commit: its `xdn` package goes first on PYTHONPATH), its runs
interleaved with ours (A B A B ...) so that both see the same machine, each
side with its own cache folder; the ratio is baseline / ours per pair, and
the outputs are compared (identical bytes, else the largest difference).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from xdn.bench import synthetic_folder


def parse_sizes(texts: Sequence[str]) -> List[Tuple[int, int]]:
  """'2048' -> (2048, 2048); '1536x1280' -> (1536, 1280) ([H, W])."""
  sizes = []
  for text in texts:
    try:
      parts = [int(v) for v in text.lower().split('x')]
      if len(parts) not in (1, 2) or min(parts) < 16:
        raise ValueError
    except ValueError:
      raise ValueError(f'size {text!r}: use N or HxW, at least 16') from None
    sizes.append((parts[0], parts[-1]))
  return sizes


def _run(command: List[str], env: Dict[str, str], cwd: str
         ) -> Dict[str, Any]:
  """One whole process: wall seconds and its peak RSS."""
  start = time.perf_counter()
  process = subprocess.Popen(command, env=env, cwd=cwd,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  stderr = process.stderr.read().decode(errors='replace')
  _, status, usage = os.wait4(process.pid, 0)
  seconds = time.perf_counter() - start
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed:\n{stderr[-3000:]}')
  return {'seconds': seconds, 'peak_rss_gb': usage.ru_maxrss / 2**20}


class _Side:
  """One xdn to time: ours, or a baseline checkout's."""

  def __init__(self, name: str, base: str, inputs: str,
               checkout: Optional[str], flags: Sequence[str]):
    self.name, self.inputs = name, inputs
    self.out = os.path.join(base, f'out-{name}')
    self.cache = os.path.join(base, f'cache-{name}')
    self.env = dict(os.environ, XDN_COMPILE_CACHE=self.cache)
    if checkout:
      self.env['PYTHONPATH'] = os.pathsep.join(
          [os.path.abspath(checkout)] +
          [p for p in [os.environ.get('PYTHONPATH')] if p])
    self.cwd = tempfile.mkdtemp(prefix='cwd-', dir=base)  # No xdn/ here.
    # Checkouts from before the regroup (xdn/cli/) run xdn-denoise as
    # xdn.denoise; --out is the name every version takes.
    module = ('xdn.denoise' if checkout and not os.path.exists(
        os.path.join(checkout, 'xdn', 'cli', 'denoise.py')) else
              'xdn.cli.denoise')
    self.command = [sys.executable, '-m', module, f'--out={self.out}',
                    '--overwrite', *flags, inputs]
    self.runs: List[Dict[str, Any]] = []

  def package(self) -> str:
    """The xdn this side imports (checked, not assumed)."""
    return subprocess.run(
        [sys.executable, '-c', 'import xdn, os; '
         'print(os.path.dirname(os.path.dirname(xdn.__file__)))'],
        env=self.env, cwd=self.cwd, capture_output=True, text=True,
        check=True).stdout.strip()

  def run(self, fresh_cache: bool) -> Dict[str, Any]:
    if fresh_cache:
      shutil.rmtree(self.cache, ignore_errors=True)
    result = _run(self.command, self.env, self.cwd)
    result['cache'] = 'empty' if fresh_cache else 'filled'
    self.runs.append(result)
    return result


def _summary(runs: List[Dict[str, Any]], images: int) -> Dict[str, Any]:
  seconds = [r['seconds'] for r in runs]
  return {'runs': len(runs), 'median_seconds': statistics.median(seconds),
          'min_seconds': min(seconds), 'max_seconds': max(seconds),
          'images_per_second': images / statistics.median(seconds),
          'peak_rss_gb': max(r['peak_rss_gb'] for r in runs)}


def benchmark(images: int = 16,
              sizes: Sequence[Tuple[int, int]] = ((1024, 1024), (1760, 2140),
                                                  (2048, 2048), (2500, 2500)),
              rounds: int = 3, flags: Sequence[str] = (),
              baseline: Optional[str] = None,
              folder: Optional[str] = None) -> Dict[str, Any]:
  """Times xdn-denoise on a folder (see the module docstring)."""
  if images < 1 or rounds < 1:
    raise ValueError('--folder_images and --rounds must be >= 1')
  base = folder or tempfile.mkdtemp(prefix='xdn-folder-bench-')
  inputs = os.path.join(base, 'in')
  pixels = synthetic_folder.make(inputs, images, sizes=sizes)
  sides = [_Side('xdn', base, inputs, None, flags)]
  if baseline:
    sides.append(_Side('baseline', base, inputs, baseline, flags))
  packages = {side.name: side.package() for side in sides}
  for first in (True,) + (False,) * rounds:
    for side in sides:
      side.run(fresh_cache=first)
  results: Dict[str, Any] = {
      'images': images, 'megapixels': pixels / 1e6,
      'sizes': ['x'.join(map(str, s)) for s in sizes],
      'cpu_count': os.cpu_count(), 'folder': base, 'packages': packages,
      'command': sides[0].command}
  for side in sides:
    results[side.name] = {
        'first_run': dict(side.runs[0],
                          images_per_second=images / side.runs[0]['seconds']),
        'later_runs': _summary(side.runs[1:], images)}
  if baseline:
    ours, theirs = sides[0].runs, sides[1].runs
    results['ratio_first_run'] = theirs[0]['seconds'] / ours[0]['seconds']
    results['ratio_later_runs'] = statistics.median(
        b['seconds'] / a['seconds'] for a, b in zip(ours[1:], theirs[1:]))
    results['same_outputs'] = synthetic_folder.compare(sides[0].out,
                                                       sides[1].out)
  return results


def markdown(results: Dict[str, Any]) -> str:
  """The results as a table (docs/speed.md)."""
  lines = ['| xdn | cache | wall s (median, min-max) | images / s | '
           'peak RSS (GB) |', '| --- | --- | ---: | ---: | ---: |']
  for name in ('xdn', 'baseline'):
    if name not in results:
      continue
    first, later = results[name]['first_run'], results[name]['later_runs']
    lines.append(f'| {name} | empty | {first["seconds"]:.1f} | '
                 f'{first["images_per_second"]:.2f} | '
                 f'{first["peak_rss_gb"]:.2f} |')
    lines.append(f'| {name} | filled | {later["median_seconds"]:.1f} '
                 f'({later["min_seconds"]:.1f}-{later["max_seconds"]:.1f}) | '
                 f'{later["images_per_second"]:.2f} | '
                 f'{later["peak_rss_gb"]:.2f} |')
  if 'ratio_later_runs' in results:
    same = results['same_outputs']
    lines.append('')
    lines.append(f'baseline / xdn wall time: {results["ratio_first_run"]:.2f}'
                 f' (first run), {results["ratio_later_runs"]:.2f} (later '
                 f'runs, median of pairs); outputs: {same["identical"]}/'
                 f'{same["files"]} identical, largest difference '
                 f'{same["max_pixel_difference"]:.1e}')
  return '\n'.join(lines)
