"""Applies a trained denoiser to your own radiographs: `xdn-denoise`.

  xdn-denoise --out=denoised scan.png scans/ study.dcm
  xdn-denoise --workdir=runs/unet --noise=gaussian:25 --out=denoised scans/

Inputs are files or folders (searched recursively) of PNG (8 or 16 bit),
JPEG, TIFF, BMP or DICOM, of any size. Colour images are converted to
grayscale. Outputs go to `--out` under the same names (a folder's tree is
kept) in the input's bit depth:
  PNG, TIFF, BMP  -> PNG of the same bit depth.
  JPEG            -> 8-bit PNG: re-encoding as JPEG would add compression
                     artefacts to the image just denoised.
  DICOM           -> uncompressed DICOM (Explicit VR Little Endian) with
                     the original metadata, the pixel data replaced (same
                     dtype and Bits Stored), a new SOP Instance UID, a
                     derived series, and the source transfer syntax named
                     in its Derivation Description.

Pixels are scaled to [0, 1] by bit depth (see `xdn.io.images.bit_depth`); for
DICOM by the Bits Stored range after the rescale slope/intercept, and
MONOCHROME1 images are inverted first so bone is bright as in training.

Without --workdir the model shipped inside xdn is used (see
xdn/pretrained/MODEL_CARD.md); it is told each image's noise, estimated from
the image (logged) unless --noise names it. Models made for a fixed size
(the 64x64 seed models) see overlapping tiles blended with a linear ramp;
the U-Net sees whole images up to `--max_pixels`, and larger ones in tiles.
Whole images are padded into size buckets (`--size_buckets`,
xdn.inference.size_buckets), with the outputs of each size alone, so that a folder
of many sizes compiles a few programs; compiled programs are kept in the
user's cache folder (`--compile_cache`). Inputs are never overwritten; an
existing output needs `--overwrite`. A file that cannot be read or written
(for any reason: unreadable, too large, no decoder, a bug) is reported in one
line naming it, and the others are still done; a closing line lists the
failed files and the exit status is 1 if any failed (`--verbose` logs each
failure's traceback). Ctrl-C stops after the current file (exit status 130);
what was written stays.
"""

import os
import sys
import time
from concurrent import futures
from typing import Any, Collection, Iterator, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

from xdn import errors
from xdn.noise import synthetic as noise
from xdn.inference import denoiser as inference
from xdn.noise import estimation as noise_estimation
from xdn.inference import outputs
from xdn import pretrained
from xdn.io import radiographs as radiograph_io
from xdn.runtime import stop as stop_lib
from xdn.inference import size_buckets
from xdn.inference import strength as strength_lib
from xdn.inference.denoiser import Denoiser, denoise_image
# Output naming and writing, shared with xdn-beam (kept importable from here).
from xdn.inference.outputs import claim_output, output_path, write_output
from xdn.io.radiographs import IMAGE_EXTENSIONS, is_dicom, read_radiograph

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined on use so importing this module adds none."""
  flags.DEFINE_string('workdir', None, 'Training workdir of the model to '
                      'apply; default: the model shipped inside xdn.')
  flags.DEFINE_string('noise', 'auto', 'For models with a noise-level input '
                      "(the shipped one): 'auto' estimates each image's "
                      'noise and its spatial correlation (logged); or '
                      'gaussian:SIGMA (0-255 scale), '
                      'correlated_gaussian:SIGMA,RHO[,RHO_X] (pixel std and '
                      'neighbour correlation, along y then x), '
                      'poisson:DOSE, poisson_gaussian:DOSE (with '
                      '--read_noise).')
  flags.DEFINE_float('read_noise', noise.DEFAULT_READ_NOISE,
                     'Read-noise sigma (0-255 scale) of '
                     '--noise=poisson_gaussian:DOSE.')
  flags.DEFINE_string('out', None, 'Folder for the denoised files (created).')
  flags.DEFINE_bool('example', False, 'Denoise the example radiograph '
                    'shipped with xdn (a chest PA crop with real detector '
                    'noise) and write its noise report and a before/after '
                    'picture beside the output.')
  flags.DEFINE_string('strength', None, 'Denoising strength, for models '
                      "with a noise-level input: 'low', 'medium', 'high' or "
                      "'full' (each defined by what it keeps: README, "
                      '"Strength levels"), or a number in (0, 2], the '
                      'fraction of the noise the model is told. Default: '
                      f"'{strength_lib.DEFAULT}' for a calibrated model, "
                      "else 'full'.")
  flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')
  flags.DEFINE_bool('compile_cache', True, 'Keep compiled programs in '
                    'the user cache folder (xdn.runtime.compile_cache; also '
                    'XDN_COMPILE_CACHE=0 or =DIR), so the next run of the '
                    'same image sizes compiles nothing.')
  flags.DEFINE_enum('precision', 'auto', list(inference.PRECISIONS),
                    "Compute precision; 'auto': bfloat16 where the CPU has "
                    "it natively and the model card's measured cost is "
                    '<= 0.1 dB, else float32. Outputs are the same type '
                    'either way.')
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                    'Which checkpoint of the workdir to use.')
  flags.DEFINE_integer('batch_size', 32, 'Tiles (or images) per model call.')
  flags.DEFINE_integer('tile', 0, 'Tile size; 0: the model\'s fixed size, or '
                       f'{inference.TILE} for the U-Net.')
  flags.DEFINE_integer('overlap', -1, 'Overlap of neighbouring tiles in '
                       'pixels; -1: a quarter of a fixed-size model\'s tile, '
                       f'{inference.OVERLAP} for the U-Net.')
  flags.DEFINE_integer('max_pixels', inference.MAX_WHOLE_PIXELS, 'U-Net: images up to this '
                       'many pixels are denoised whole, larger ones in tiles.')
  flags.DEFINE_integer('size_buckets', size_buckets.STEPS_PER_OCTAVE,
                       'U-Net: whole images are padded to the next of this '
                       'many sizes per octave, so that a folder of many sizes '
                       'compiles a few programs; the outputs are those of '
                       'each size alone (xdn.inference.size_buckets). 0: compile each '
                       'size.')
  flags.DEFINE_integer('ensemble_max_pixels', 256 * 256, 'Images of at most '
                       'this many pixels are denoised as the mean over their 8 '
                       'flips/rotations (better, 8x the compute); 0: never.')
  flags.DEFINE_bool('adapt', False, 'Before denoising, fine-tune the model '
                    'on the inputs themselves (self-supervised, no clean '
                    'image: xdn.inference.adaptation), keeping the starting weights '
                    'unless held-out parts of the inputs judge the '
                    'fine-tuned ones better.')
  flags.DEFINE_integer('adapt_steps', 300, '--adapt budget in optimiser '
                       'steps (0: no step limit; then set --adapt_seconds).')
  flags.DEFINE_float('adapt_seconds', 0.0, '--adapt budget in seconds (0: '
                     'no time limit); the first limit reached stops it.')
  flags.DEFINE_float('adapt_learning_rate', 2e-5, '--adapt Adam step size.')
  flags.DEFINE_integer('adapt_max_images', ADAPT_MAX_IMAGES, '--adapt learns '
                       'from at most this many inputs, evenly spread over '
                       'them (bounds memory); all are denoised.')
  flags.DEFINE_string('adapt_save', None, 'Folder to save the adapted model '
                      'in (reuse it with --workdir=FOLDER).')
  flags.DEFINE_bool('verbose', False, 'Log the traceback of each file that '
                    'fails (always logged at debug level, -v 1).')


# Failed files named in the closing summary line.
_MAX_LISTED = 50
# --adapt reads its images into memory: 32 radiographs of 2048^2 are 0.5 GB.
ADAPT_MAX_IMAGES = 32


# ------------------------------------------------------------------- files


def find_inputs(paths: Sequence[str]) -> Iterator[Tuple[str, str]]:
  """(file, name relative to --out) for each input file or folder member."""
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


def denoise_one_file(denoiser: Denoiser, path: str, relative: str,
                     out_dir: str, *, description: str = 'xdn denoised',
                     overwrite: bool = False,
                     inputs: Collection[str] = frozenset(),
                     written: Collection[str] = frozenset(),
                     **denoise_kwargs) -> Tuple[str, Tuple[int, int]]:
  """Decodes, denoises and writes one file; returns its output and [H, W].

  Raises on any failure of the file; `denoise_files` reports it. Writes only
  under `out_dir`, never over a file of `inputs` or `written` (real paths),
  and never leaves half a file.
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


def denoise_files(denoiser: Denoiser, inputs: Sequence[str], out_dir: str, *,
                  overwrite: bool = False, verbose: bool = False,
                  **denoise_kwargs) -> int:
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

  `denoise_kwargs` go to `denoise_image` (tile, overlap, batch_size,
  max_pixels, noise_level).
  """
  if not verbose:
    radiograph_io.quiet_pydicom_logs()
  pairs = list(find_inputs(inputs))
  input_files = {os.path.realpath(path) for path, _ in pairs}
  description = outputs.describe(denoiser, denoise_kwargs.get('noise_level'))
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
      _log_failure(result.path, result.error, verbose)
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

  estimate = (denoise_kwargs.get('noise_level') is None and
              getattr(denoiser, 'takes_noise_map', False))

  precompile = (getattr(denoiser, 'precompile', None)
                if denoise_kwargs.get('tile', 0) <= 0 else None)

  def read(path: str):
    """The decoded file, and its noise estimate where one is needed."""
    radiograph = read_radiograph(path, description)
    if radiograph.pixels.ndim != 2:  # denoise_image reports it.
      return radiograph, None
    if precompile is not None:
      compiler.submit(precompile, radiograph.pixels.shape,
                      denoise_kwargs.get('max_pixels',
                                         inference.MAX_WHOLE_PIXELS))
    return radiograph, (noise_estimation.estimate_noise(radiograph.pixels)
                        if estimate else None)

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
          kwargs = denoise_kwargs
          if level is not None:  # Logged here: the log stays in order.
            logging.info('Estimated noise: %s', level.describe())
            kwargs = dict(denoise_kwargs, noise_level=level)
          denoised = denoise_image(denoiser, radiograph.pixels, **kwargs)
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
        logging.error('%s: out of memory; stopping. Lower --max_pixels or '
                      '--batch_size.', path)
      _log_summary(len(written), len(pairs), failed, out_dir)
      raise
  _log_summary(len(written), len(pairs), failed, out_dir)
  return len(failed)


def _out_of_memory(error: Exception) -> bool:
  """An accelerator's out-of-memory (XLA RESOURCE_EXHAUSTED) error."""
  return 'RESOURCE_EXHAUSTED' in str(error) and 'Runtime' in type(
      error).__name__


def _log_failure(path: str, error: Exception, verbose: bool) -> None:
  """One error line naming the file; the traceback at debug level."""
  message = outputs.failure_message(
      error, 'run with --verbose for the traceback, and ')
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


def parse_noise(text: str, read_noise: Optional[float] = None
                ) -> Optional[noise_estimation.NoiseEstimate]:
  """--noise: None for 'auto', else the named noise's variance model
  (`read_noise`: poisson_gaussian's, default --read_noise)."""
  if text == 'auto':
    return None
  kind, _, level = text.partition(':')
  try:
    values = [float(v) for v in level.split(',')]
    correlated = kind in noise.CORRELATED_KINDS
    if not 1 <= len(values) <= (3 if correlated else 1):
      raise ValueError
  except ValueError:
    raise errors.UserError(
        f"--noise={text!r}: use 'auto', gaussian:SIGMA, "
        'correlated_gaussian:SIGMA,RHO[,RHO_X], poisson:DOSE, '
        'poisson_gaussian:DOSE or xray:N0[,RHO[,RHO_X]], e.g. '
        '--noise=correlated_gaussian:25,0.4') from None
  try:
    if read_noise is None:
      read_noise = FLAGS.read_noise
    return noise_estimation.known_noise(kind, values[0], read_noise,
                                        *values[1:])
  except ValueError as e:
    raise errors.UserError(f'--noise={text!r}: {e}') from None


def load_model() -> Denoiser:
  """The model of --workdir, or the shipped one."""
  strength = (strength_lib.parse(FLAGS.strength)
              if FLAGS.strength is not None else None)
  if FLAGS.workdir:
    from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
    checkpoints.quiet_orbax_logs()  # Orbax is loaded for workdirs only.
    denoiser = inference.load(FLAGS.workdir, FLAGS.checkpoint,
                              FLAGS.precision, strength)
    source = FLAGS.workdir
  else:
    denoiser = inference.load_pretrained(FLAGS.precision, strength=strength)
    source = f'the model shipped with xdn ({pretrained.FOLDER})'
  logging.info('Model %s (step %d) from %s, %s, strength %s', denoiser.name,
               denoiser.step, source, denoiser.precision,
               denoiser.strength_label)
  return denoiser


def write_example_extras(source: str, denoised_path: str, out_dir: str,
                         denoiser: Optional[Denoiser] = None) -> List[str]:
  """The noise reports of the example and its output (the after side), a
  before/after picture (centre crop, windowed to the input's 1-99th
  percentiles) and, for a model with strength levels, the crop at each
  level (levels.png)."""
  from xdn.noise import report as noise_report  # pylint: disable=g-import-not-at-top
  from xdn.inference import strength as strength_levels  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

  level = getattr(denoiser, 'strength', None)
  written = [picture([('noisy (detector noise)', before),
                      (f'xdn-denoise{f", strength {level}" if level else ""}',
                       after)], 'before_after.png')]
  levels = strength_levels.calibrated_levels(
      denoiser.config.get('inference', {})) if denoiser is not None else {}
  if levels and getattr(denoiser, 'takes_noise_map', False):
    panels = [('noisy', before)] + [
        (level, denoise_image(denoiser.at_strength(level), before))
        for level in strength_levels.LEVELS if level in levels or
        level == 'full']
    written.append(picture(panels, 'levels.png'))
  stem = os.path.splitext(os.path.basename(source))[0]
  return [os.path.join(out_dir, f'{stem}_noise.png')] + written


def adapt_to_files(denoiser: Denoiser, inputs: Sequence[str],
                   noise_level: Optional[noise_estimation.NoiseEstimate]
                   ) -> Denoiser:
  """--adapt: the denoiser fine-tuned on (up to --adapt_max_images of) the
  input files, or the starting one if that is judged better. Files that
  cannot be read are left to the denoising pass, which reports them."""
  from xdn.inference import adaptation  # pylint: disable=g-import-not-at-top
  paths = [path for path, _ in find_inputs(inputs)]
  if len(paths) > FLAGS.adapt_max_images:
    picks = np.linspace(0, len(paths) - 1, FLAGS.adapt_max_images)
    paths = [paths[int(round(i))] for i in picks]
  images = []
  for path in paths:
    try:
      images.append(read_radiograph(path).pixels)
    except (ValueError, OSError):
      continue
  if not images:
    raise errors.UserError('no readable input to adapt to')
  config = adaptation.default_config()
  config.steps = FLAGS.adapt_steps
  config.seconds = FLAGS.adapt_seconds
  config.learning_rate = FLAGS.adapt_learning_rate
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
  if FLAGS.adapt_save:
    logging.info('Adapted model saved to %s',
                 os.path.dirname(adaptation.save(result.denoiser,
                                                 FLAGS.adapt_save)))
  return result.denoiser


def main(argv: Sequence[str]) -> None:
  inputs = argv[1:]
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  if not FLAGS.compile_cache:
    os.environ['XDN_COMPILE_CACHE'] = '0'
  if FLAGS.example:
    from xdn import examples  # pylint: disable=g-import-not-at-top
    if inputs:
      raise app.UsageError('--example denoises the shipped example; name no '
                           'other inputs')
    inputs = [examples.EXAMPLE]
  if not inputs:
    raise app.UsageError('name the input files or folders, e.g. '
                         'xdn-denoise --out=DIR scan.png')
  if not FLAGS.out:
    raise app.UsageError('--out is required: the folder for the results')
  try:
    noise_level = parse_noise(FLAGS.noise)
    denoiser = load_model()
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None
  if FLAGS.size_buckets < 0:
    raise app.UsageError('--size_buckets must be >= 0 (0: no buckets)')
  denoiser.batch_size = FLAGS.batch_size
  denoiser.ensemble_max_pixels = FLAGS.ensemble_max_pixels
  denoiser.bucket_steps = FLAGS.size_buckets
  if noise_level is not None:
    if not denoiser.takes_noise_map:
      logging.warning('--noise is ignored: model %s takes no noise level',
                      denoiser.name)
      noise_level = None
    else:
      logging.info('Noise given: %s', noise_level.describe())
  if FLAGS.adapt:
    try:
      denoiser = adapt_to_files(denoiser, inputs, noise_level)
    except errors.UserError as e:
      raise SystemExit(f'error: --adapt: {e}') from None
  try:
    failed = denoise_files(denoiser, inputs, FLAGS.out,
                           overwrite=FLAGS.overwrite, verbose=FLAGS.verbose,
                           tile=FLAGS.tile, overlap=FLAGS.overlap,
                           batch_size=FLAGS.batch_size,
                           max_pixels=FLAGS.max_pixels,
                           noise_level=noise_level)
  except KeyboardInterrupt:
    sys.exit(130)  # The shell's status for Ctrl-C; the summary is logged.
  if failed:
    sys.exit(1)
  if FLAGS.example:
    written = output_path(FLAGS.out, os.path.basename(inputs[0]), '.png')
    extras = write_example_extras(inputs[0], written, FLAGS.out, denoiser)
    print(f'Denoised {written}; noise report and pictures: '
          f'{", ".join(extras)}')


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-denoise)."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
