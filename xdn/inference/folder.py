"""Denoising files and folders of radiographs: the loop behind `xdn-denoise`.

`denoise_files(denoiser, inputs, out_dir)` finds the radiographs among
`inputs` (files, and folders searched recursively: `find_inputs`),
denoises each (`xdn.inference.tiling.denoise_image`) and writes it under
`out_dir` by the rules of `xdn.inference.outputs`. A file that fails is
one log line naming it, and the others are still done. `adapt_to_files`
fine-tunes a model on the files first (`xdn.inference.adaptation`), and
`write_example_extras` draws the shipped example's pictures.

A library: every setting is an argument; the command line's flags are in
`xdn.cli.denoise`.
"""

import os
import time
from concurrent import futures
from typing import Any, Collection, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import ml_collections
import numpy as np

from xdn import errors
from xdn.inference.denoiser import Denoiser
from xdn.inference import outputs
from xdn.inference.outputs import claim_output, write_output
from xdn.inference import strength as strength_lib
from xdn.inference.tiling import MAX_WHOLE_PIXELS, denoise_image
from xdn.inference import told as told_lib
from xdn.io import atomic
from xdn.io import radiographs as radiograph_io
from xdn.io.radiographs import IMAGE_EXTENSIONS, is_dicom, read_radiograph
from xdn import models
from xdn.noise.estimation import NoiseEstimate
from xdn.runtime import stop as stop_lib

# Failed files named in the closing summary line.
_MAX_LISTED = 50
# Adaptation reads its images into memory: 32 radiographs of 2048^2 are
# 0.5 GB.
ADAPT_MAX_IMAGES = 32


# ------------------------------------------------------------------- files


def find_inputs(paths: Sequence[str]) -> Iterator[Tuple[str, str]]:
  """(file, name relative to the output folder) for each input file or
  folder member (radiographs only, by extension or DICOM header)."""
  for path in paths:
    if os.path.isdir(path):
      for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
          full = os.path.join(root, name)
          ext = os.path.splitext(name)[1].lower()
          if ext in IMAGE_EXTENSIONS or is_dicom(full):
            yield full, os.path.relpath(full, path)
    else:
      yield path, os.path.basename(path)


def denoise_one_file(denoiser: Any, path: str, relative: str,
                     out_dir: str, *, description: str = 'xdn denoised',
                     overwrite: bool = False,
                     inputs: Collection[str] = frozenset(),
                     written: Collection[str] = frozenset(),
                     **denoise_kwargs) -> Tuple[str, Tuple[int, int]]:
  """Decodes, denoises and writes one file; returns its output and [H, W].

  Raises on any failure of the file; `denoise_files` reports it. Writes only
  under `out_dir`, never over a file of `inputs` or `written` (real paths),
  and never leaves half a file. `denoise_kwargs` go to `denoise_image`.
  """
  radiograph = read_radiograph(path, description)
  target = claim_output(radiograph, relative, out_dir, overwrite=overwrite,
                        inputs=inputs, written=written)
  write_output(radiograph, denoise_image(denoiser, radiograph.pixels,
                                         **denoise_kwargs), target)
  return target, radiograph.pixels.shape


class _Result:
  """What became of one file of the folder loop."""

  def __init__(self, path: str, target: str = '', shape=(0, 0),
               error: Optional[BaseException] = None):
    self.path, self.target, self.shape, self.error = path, target, shape, error


def denoise_files(denoiser: Any, inputs: Sequence[str], out_dir: str, *,
                  overwrite: bool = False, verbose: bool = False,
                  tile: int = 0, overlap: int = -1, batch_size: int = 32,
                  max_pixels: int = MAX_WHOLE_PIXELS,
                  noise_level: Optional[NoiseEstimate] = None,
                  failure_hint: str = '') -> int:
  """Denoises every input file into `out_dir`; returns how many failed.

  Overlapped: while the model denoises file i, a thread decodes file i + 1
  (and estimates its noise, for a model told it) and another encodes and
  writes file i - 1 (the model releases the GIL); a third compiles the
  program of a size not seen before meanwhile (`Denoiser.precompile`), so
  that even the first file's compilation overlaps its noise estimate.
  The outputs, their order and the log lines are those of one file after
  the other. Each file is done inside one guard: any exception of that file
  is one error line naming it (with the traceback at debug level, or at
  error level if `verbose`), and the others are still done. Out of memory
  is not survived: the summary is logged and the error raised. Ctrl-C
  stops after the current file (a second one stops at once); the summary
  is logged and KeyboardInterrupt raised, and what was written stays.

  `tile`, `overlap`, `batch_size`, `max_pixels`: as `denoise_image`'s;
  `noise_level`: the noise of every file (None: each file's own estimate,
  for a model told its noise); `failure_hint`: how the caller's user sees
  a failure's traceback, e.g. 'run with --verbose for the traceback, and '.
  `denoiser`: a `Denoiser`, or any callable [B, H, W, 1] -> same.
  """
  if not verbose:
    radiograph_io.quiet_pydicom_logs()
  pairs = list(find_inputs(inputs))
  input_files = {os.path.realpath(path) for path, _ in pairs}
  description = outputs.describe(denoiser, noise_level)
  capabilities = models.capabilities_of(denoiser)
  denoise_kwargs = dict(tile=tile, overlap=overlap, batch_size=batch_size,
                        max_pixels=max_pixels)
  written, failed = set(), []
  claimed = set()  # Outputs of files denoised or being written.
  start = time.time()
  handled = 0  # Files written or failed.

  def finish(result: _Result) -> None:
    nonlocal handled
    if result.error is not None:
      if isinstance(result.error, MemoryError) or _out_of_memory(
          result.error):
        raise result.error
      failed.append(result.path)
      _log_failure(result.path, result.error, verbose, failure_hint)
    else:
      written.add(os.path.realpath(result.target))
      elapsed = time.time() - start
      logging.info('[%d/%d] %s -> %s (%dx%d; ETA %.0fs)', handled + 1,
                   len(pairs), result.path, result.target, *result.shape,
                   elapsed / (handled + 1) * (len(pairs) - handled - 1))
    handled += 1

  def settle(pending) -> None:
    """Waits for a file's write and reports it."""
    if pending is None:
      return
    result, future = pending
    try:
      future.result()
    except Exception as e:  # pylint: disable=broad-except  # Any: guard.
      result.error = e
    finish(result)

  # Only a Denoiser compiles; whole images only (tiles are one shape).
  precompile = (denoiser.precompile if isinstance(denoiser, Denoiser) and
                tile <= 0 else None)

  def read(path: str):
    """The decoded file, and the noise its model is told (estimated here,
    off the main thread, unless given)."""
    radiograph = read_radiograph(path, description)
    if radiograph.pixels.ndim != 2:  # denoise_image reports it.
      return radiograph, noise_level
    if precompile is not None:
      compiler.submit(precompile, radiograph.pixels.shape, max_pixels)
    return radiograph, told_lib.noise_for(capabilities, radiograph.pixels,
                                          noise_level)

  path = pairs[0][0] if pairs else ''
  pending = None  # (result, write future) of the file before.
  with stop_lib.StopRequest(
      message='stopping after the current file') as stop, \
       futures.ThreadPoolExecutor(1, 'xdn-compile') as compiler, \
       futures.ThreadPoolExecutor(1, 'xdn-read') as reader, \
       futures.ThreadPoolExecutor(1, 'xdn-write') as writer:
    try:
      upcoming = reader.submit(read, pairs[0][0]) if pairs else None
      for i, (path, relative) in enumerate(pairs):
        if stop.requested:
          raise KeyboardInterrupt
        current, upcoming = upcoming, (
            reader.submit(read, pairs[i + 1][0]) if i + 1 < len(pairs)
            else None)
        result, denoised = _Result(path), None
        try:
          radiograph, level = current.result()
          result.target = claim_output(
              radiograph, relative, out_dir, overwrite=overwrite,
              inputs=input_files, written=claimed)
          result.shape = radiograph.pixels.shape
          if noise_level is None and level is not None:
            # Logged here: the log stays in order. A calibrated level's
            # factor depends on the image's noise: the one it got.
            logging.info('Estimated noise: %s; told %.2f x it (strength %s)',
                         level.describe(),
                         denoiser.strength_factors([level], 1)[0],
                         denoiser.strength)
          denoised = denoise_image(denoiser, radiograph.pixels,
                                   noise_level=level, **denoise_kwargs)
          claimed.add(os.path.realpath(result.target))
        except MemoryError:
          raise
        except Exception as e:  # pylint: disable=broad-except  # Any: guard.
          if _out_of_memory(e):
            raise
          result.error = e
        settle(pending)  # The file before first: logs stay in order.
        pending = None
        if result.error is not None:
          finish(result)
        else:
          pending = (result, writer.submit(write_output, radiograph,
                                           denoised, result.target))
      settle(pending)
      pending = None
    except BaseException as e:
      if pending is not None:  # Its write was under way: let it finish.
        try:
          settle(pending)
        except BaseException:  # pylint: disable=broad-except
          pass
      if upcoming is not None:
        upcoming.cancel()
      if isinstance(e, KeyboardInterrupt):
        logging.warning('Interrupted: %d of %d files not done; the files '
                        'written stay.', len(pairs) - handled, len(pairs))
      elif isinstance(e, MemoryError) or _out_of_memory(e):
        logging.error('%s: out of memory; stopping. Denoise fewer pixels at '
                      'once (a lower whole-image limit or batch size).', path)
      _log_summary(len(written), len(pairs), failed, out_dir)
      raise
  _log_summary(len(written), len(pairs), failed, out_dir)
  return len(failed)


def _out_of_memory(error: Exception) -> bool:
  """An accelerator's out-of-memory (XLA RESOURCE_EXHAUSTED) error."""
  return 'RESOURCE_EXHAUSTED' in str(error) and 'Runtime' in type(
      error).__name__


def _log_failure(path: str, error: Exception, verbose: bool,
                 hint: str) -> None:
  """One error line naming the file; the traceback at debug level."""
  message = outputs.failure_message(error, hint)
  logging.error('%s', message if path in message else f'{path}: {message}')
  if verbose:
    logging.error('Traceback of %s:', path, exc_info=error)
  else:
    logging.debug('Traceback of %s:', path, exc_info=error)


def _log_summary(done: int, total: int, failed: Sequence[str],
                 out_dir: str) -> None:
  logging.info('%d of %d files denoised into %s', done, total, out_dir)
  if failed:
    shown = ', '.join(failed[:_MAX_LISTED])
    more = len(failed) - _MAX_LISTED
    logging.warning('%d failed: %s%s', len(failed), shown,
                    f' and {more} more (see the errors above)' if more > 0
                    else '')


# ------------------------------------------------------------- adaptation


def adapt_to_files(denoiser: Denoiser, inputs: Sequence[str],
                   noise_level: Optional[NoiseEstimate], *,
                   config: Optional[ml_collections.ConfigDict] = None,
                   max_images: int = ADAPT_MAX_IMAGES,
                   save_to: Optional[str] = None) -> Denoiser:
  """The denoiser fine-tuned on (up to `max_images`, evenly spread, of) the
  input files by `adaptation.adapt` with `config` (None: its default), or
  the starting one if that is judged better; saved as a model folder in
  `save_to` if given. Files that cannot be read are left to the denoising
  pass, which reports them."""
  from xdn.inference import adaptation  # pylint: disable=g-import-not-at-top
  config = config or adaptation.default_config()
  paths = [path for path, _ in find_inputs(inputs)]
  if len(paths) > max_images:
    picks = np.linspace(0, len(paths) - 1, max_images)
    paths = [paths[int(round(i))] for i in picks]
  images = []
  for path in paths:
    try:
      images.append(read_radiograph(path).pixels)
    except (ValueError, OSError):
      continue
  if not images:
    raise errors.UserError('no readable input to adapt to')
  levels = None if noise_level is None else [noise_level] * len(images)
  logging.info('Adapting %s to %d image(s): %s', denoiser.name, len(images),
               'up to %d steps' % config.steps if config.steps > 0 else
               'up to %.0f s' % config.seconds)

  def progress(step, total, elapsed, left, message):
    if message or step % 25 == 0:
      logging.info('adapt %s: %s%s', f'{step}/{total}' if total else step,
                   message or f'{elapsed:.0f} s',
                   f' (ETA {left:.0f} s)' if left is not None else '')

  result = adaptation.adapt(denoiser, images, config, levels, progress)
  logging.info('%s', result.summary())
  if save_to:
    logging.info('Adapted model saved to %s',
                 os.path.dirname(adaptation.save(result.denoiser, save_to)))
  return result.denoiser


# ----------------------------------------------------------- the example


def write_example_extras(source: str, denoised_path: str, out_dir: str,
                         denoiser: Denoiser) -> List[str]:
  """The noise reports of the example and its output (the after side), a
  before/after picture (centre crop, windowed to the input's 1-99th
  percentiles) and, for a model with strength levels, the crop at each
  level (levels.png). Returns the files written."""
  from xdn.noise import report as noise_report  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  noise_report.write(source, out_dir, after=denoised_path)
  before = read_radiograph(source).pixels
  after = read_radiograph(denoised_path).pixels
  h, w = before.shape
  c = min(h, w, 192) // 2
  crop = lambda x: x[h // 2 - c:h // 2 + c, w // 2 - c:w // 2 + c]
  lo, hi = np.percentile(crop(before), [1, 99])

  def picture(panels, name):
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (title, image) in zip(np.atleast_1d(axes), panels):
      ax.imshow(crop(image), cmap='gray', vmin=lo, vmax=hi,
                interpolation='nearest')
      ax.set_title(title, fontsize=10)
      ax.axis('off')
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path

  level = denoiser.strength
  written = [picture([('noisy (detector noise)', before),
                      (f'xdn-denoise{f", strength {level}" if level else ""}',
                       after)], 'before_after.png')]
  levels = strength_lib.calibrated_levels(denoiser.config.get('inference', {}))
  if levels and denoiser.capabilities.takes_noise_map:
    panels = [('noisy', before)] + [
        (level, denoise_image(denoiser.at_strength(level), before))
        for level in strength_lib.LEVELS if level in levels or
        level == 'full']
    written.append(picture(panels, 'levels.png'))
  stem = os.path.splitext(os.path.basename(source))[0]
  return [os.path.join(out_dir, f'{stem}_noise.png')] + written
