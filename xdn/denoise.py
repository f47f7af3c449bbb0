"""Applies a trained denoiser to your own radiographs: `xdn-denoise`.

  xdn-denoise --workdir=runs/unet --out=denoised scan.png scans/ study.dcm

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

Pixels are scaled to [0, 1] by bit depth (see `xdn.image_io.bit_depth`); for
DICOM by the Bits Stored range after the rescale slope/intercept, and
MONOCHROME1 images are inverted first so bone is bright as in training.

Models made for a fixed size (the 64x64 seed models) see overlapping tiles
blended with a linear ramp; the U-Net sees whole images up to
`--max_pixels`, and larger ones in tiles. Inputs are never overwritten; an
existing output needs `--overwrite`. A file that cannot be read or written
(for any reason: unreadable, too large, no decoder, a bug) is reported in one
line naming it, and the others are still done; a closing line lists the
failed files and the exit status is 1 if any failed (`--verbose` logs each
failure's traceback). Ctrl-C stops after the current file (exit status 130);
what was written stays.
"""

import os
import signal
import sys
import threading
import time
from typing import Any, Collection, Iterator, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

from xdn import image_io
from xdn import radiograph_io
from xdn.radiograph_io import IMAGE_EXTENSIONS, is_dicom, read_radiograph

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined on use so importing this module adds none."""
  flags.DEFINE_string('workdir', None, 'Training workdir of the model to '
                      'apply.')
  flags.DEFINE_string('out', None, 'Folder for the denoised files (created).')
  flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                    'Which checkpoint of the workdir to use.')
  flags.DEFINE_integer('batch_size', 32, 'Tiles (or images) per model call.')
  flags.DEFINE_integer('tile', 0, 'Tile size; 0: the model\'s fixed size, or '
                       f'{UNET_TILE} for the U-Net.')
  flags.DEFINE_integer('overlap', -1, 'Overlap of neighbouring tiles in '
                       'pixels; -1: a quarter of the tile.')
  flags.DEFINE_integer('max_pixels', 2048 * 2048, 'U-Net: images up to this '
                       'many pixels are denoised whole, larger ones in tiles.')
  flags.DEFINE_bool('verbose', False, 'Log the traceback of each file that '
                    'fails (always logged at debug level, -v 1).')


# Any callable [B, H, W, 1] float32 in [0, 1] -> same, with `fixed_size`
# (None or the square size it needs) and `name`: `xdn.inference.Denoiser`.
Denoiser = Any

UNET_TILE = 512
# U-Net tiles start at multiples of this, so that strided convolutions see
# the same pixel grid in every tile (2**depth for depth <= 5).
_TILE_ALIGN = 32
# Failed files named in the closing summary line.
_MAX_LISTED = 50


# ------------------------------------------------------------------ tiling


def ramp_window(tile: int, overlap: int) -> np.ndarray:
  """1-D blending weights: linear ramps over `overlap` pixels at each end.

  Never zero, so a pixel covered by a single tile (at the image border) keeps
  that tile's value after normalising by the summed weights.
  """
  i = np.arange(tile, dtype=np.float32) + 0.5
  ramp = np.minimum(i, tile - i) / max(overlap, 1)
  return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def tile_grid(length: int, tile: int, overlap: int,
              align: int = 1) -> Tuple[List[int], int]:
  """Tile starts along one axis, and the padded length they cover.

  Tiles advance by `tile - overlap` rounded down to a multiple of `align`;
  the axis is padded (by less than one stride) so the last tile ends at its
  end, which keeps every tile on the aligned grid.
  """
  stride = max((tile - overlap) // align * align, align)
  steps = max(-(-(length - tile) // stride), 0)
  return [i * stride for i in range(steps + 1)], tile + steps * stride


def denoise_tiled(denoiser: Denoiser, image: np.ndarray, tile: int,
                  overlap: int, batch_size: int = 32,
                  align: int = 1) -> np.ndarray:
  """Denoises a [H, W] image in overlapping `tile` x `tile` tiles.

  The image is mirror-padded up to the tile grid (small images up to one
  tile). Tiles are denoised `batch_size` at a time and blended with
  `ramp_window` weights.
  """
  image = np.asarray(image, np.float32)
  h, w = image.shape
  ys, ph = tile_grid(h, tile, overlap, align)
  xs, pw = tile_grid(w, tile, overlap, align)
  # 'symmetric' also works for 1-pixel images and pads longer than them.
  image = np.pad(image, ((0, ph - h), (0, pw - w)), mode='symmetric')
  window = np.outer(ramp_window(tile, overlap), ramp_window(tile, overlap))
  total = np.zeros((ph, pw), np.float32)
  weight = np.zeros((ph, pw), np.float32)
  corners = [(y, x) for y in ys for x in xs]
  for first in range(0, len(corners), batch_size):
    batch = corners[first:first + batch_size]
    tiles = np.stack([image[y:y + tile, x:x + tile] for y, x in batch])
    # Pad to a power of two: a compiled model then serves every image with
    # a handful of batch shapes instead of one per tile count.
    padded = min(1 << (len(batch) - 1).bit_length(), max(batch_size, 1))
    tiles = np.concatenate(
        [tiles, np.zeros((padded - len(batch), tile, tile), np.float32)])
    outputs = np.asarray(denoiser(tiles[..., None]))[..., 0]
    for (y, x), out in zip(batch, outputs):
      total[y:y + tile, x:x + tile] += window * out
      weight[y:y + tile, x:x + tile] += window
  return (total / weight)[:h, :w]


def denoise_image(denoiser: Denoiser, image: np.ndarray, *, tile: int = 0,
                  overlap: int = -1, batch_size: int = 32,
                  max_pixels: int = 2048 * 2048) -> np.ndarray:
  """Denoises one [H, W] float image in [0, 1], whole or in tiles."""
  image = np.asarray(image, np.float32)
  if image.ndim != 2:
    raise ValueError(f'expected a 2-D [H, W] image, got shape {image.shape}')
  fixed = getattr(denoiser, 'fixed_size', None)
  if fixed is None and tile <= 0 and image.size <= max_pixels:
    return np.asarray(denoiser(image[None, ..., None]))[0, ..., 0]
  if fixed is not None:
    if tile > 0 and tile != fixed:
      raise ValueError(f'model {denoiser.name!r} takes {fixed}x{fixed} '
                       f'tiles; drop --tile or set --tile={fixed}')
    tile, align = fixed, 1
  else:
    tile, align = tile if tile > 0 else UNET_TILE, _TILE_ALIGN
  if overlap < 0:
    overlap = tile // 4
  if overlap >= tile:
    raise ValueError(f'--overlap={overlap} must be smaller than the tile '
                     f'({tile})')
  return denoise_tiled(denoiser, image, tile, overlap, batch_size, align)


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


def output_path(out_dir: str, relative: str, extension: str) -> str:
  return os.path.join(out_dir, os.path.splitext(relative)[0] + extension)


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
  target = output_path(out_dir, relative, radiograph.extension)
  real, root = os.path.realpath(target), os.path.realpath(out_dir)
  if os.path.commonpath([real, root]) != root:
    raise ValueError(f'output {target!r} would be outside --out={out_dir!r}')
  if real in inputs:
    raise ValueError(f'output {target!r} would overwrite an input; '
                     'choose another --out')
  if real in written:
    raise ValueError(f'output {target!r} was already written for another '
                     'input of the same name; denoise them separately')
  if os.path.exists(target) and not overwrite:
    raise FileExistsError(f'output {target!r} exists; pass --overwrite '
                          'to replace it')
  denoised = denoise_image(denoiser, radiograph.pixels, **denoise_kwargs)
  data = radiograph.to_file(denoised)
  os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
  tmp = f'{target}.{os.getpid()}.tmp'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, target)  # A crash never leaves half a file.
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target, radiograph.pixels.shape


def denoise_files(denoiser: Denoiser, inputs: Sequence[str], out_dir: str, *,
                  overwrite: bool = False, verbose: bool = False,
                  **denoise_kwargs) -> int:
  """Denoises every input file into `out_dir`; returns how many failed.

  Each file is done inside one guard: any exception of that file is one
  error line naming it (with the traceback at debug level, or at error
  level if `verbose`), and the others are still done. Out of memory is not
  survived: the summary is logged and the error raised. Ctrl-C stops after
  the current file (a second one stops at once); the summary is logged and
  KeyboardInterrupt raised, and what was written stays.

  `denoise_kwargs` go to `denoise_image` (tile, overlap, batch_size,
  max_pixels).
  """
  if not verbose:
    radiograph_io.quiet_pydicom_logs()
  pairs = list(find_inputs(inputs))
  input_files = {os.path.realpath(path) for path, _ in pairs}
  description = (f'denoised by xdn {getattr(denoiser, "name", "model")} '
                 f'step {getattr(denoiser, "step", "?")}')
  written, failed = set(), []
  start = time.time()
  handled = 0  # Files written or failed.
  with _StopAfterCurrentFile() as stop:
    try:
      for path, relative in pairs:
        if stop.requested:
          raise KeyboardInterrupt
        try:
          target, (h, w) = denoise_one_file(
              denoiser, path, relative, out_dir, description=description,
              overwrite=overwrite, inputs=input_files, written=written,
              **denoise_kwargs)
        except MemoryError:
          raise
        except Exception as e:  # pylint: disable=broad-except  # Any: guard.
          if _out_of_memory(e):
            raise
          failed.append(path)
          _log_failure(path, e, verbose)
        else:
          written.add(os.path.realpath(target))
          elapsed = time.time() - start
          logging.info('[%d/%d] %s -> %s (%dx%d; ETA %.0fs)', handled + 1,
                       len(pairs), path, target, h, w,
                       elapsed / (handled + 1) * (len(pairs) - handled - 1))
        handled += 1
    except BaseException as e:
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
  message = image_io.clean_message(error) or type(error).__name__
  if not isinstance(error, (ValueError, OSError)):
    # Not a bad file but a bug (or a case nobody foresaw): say so.
    message = (f'failed with an unexpected {type(error).__name__}: {message} '
               '(run with --verbose for the traceback, and please report it)')
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


class _StopAfterCurrentFile:
  """Ctrl-C sets `requested`: the loop stops after the current file.

  A second Ctrl-C raises KeyboardInterrupt at once. Only the main thread can
  handle signals; elsewhere Ctrl-C keeps its default behaviour.
  """

  def __enter__(self) -> '_StopAfterCurrentFile':
    self.requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def _handle(self, signum: int, frame: Any) -> None:
    del signum, frame
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    logging.warning('Ctrl-C: stopping after the current file (press Ctrl-C '
                    'again to stop now).')

  def __exit__(self, *exc_info: Any) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)


def main(argv: Sequence[str]) -> None:
  inputs = argv[1:]
  from xdn import checkpoints  # pylint: disable=g-import-not-at-top  # JAX.
  checkpoints.quiet_orbax_logs()
  if not inputs:
    raise app.UsageError('name the input files or folders, e.g. '
                         'xdn-denoise --workdir=W --out=DIR scan.png')
  if not FLAGS.workdir or not FLAGS.out:
    raise app.UsageError('--workdir and --out are required')
  from xdn import inference  # pylint: disable=g-import-not-at-top  # JAX.
  try:
    denoiser = inference.load_denoiser(FLAGS.workdir, FLAGS.checkpoint)
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f'error: {e}') from None
  denoiser.batch_size = FLAGS.batch_size
  logging.info('Model %s (step %d) from %s', denoiser.name, denoiser.step,
               FLAGS.workdir)
  try:
    failed = denoise_files(denoiser, inputs, FLAGS.out,
                           overwrite=FLAGS.overwrite, verbose=FLAGS.verbose,
                           tile=FLAGS.tile, overlap=FLAGS.overlap,
                           batch_size=FLAGS.batch_size,
                           max_pixels=FLAGS.max_pixels)
  except KeyboardInterrupt:
    sys.exit(130)  # The shell's status for Ctrl-C; the summary is logged.
  if failed:
    sys.exit(1)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-denoise)."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
