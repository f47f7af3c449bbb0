"""Applies a trained denoiser to your own radiographs: `xdn-denoise`.

  xdn-denoise --workdir=runs/unet --out=denoised scan.png scans/ study.dcm

Inputs are files or folders (searched recursively) of PNG (8 or 16 bit),
JPEG, TIFF, BMP or DICOM, of any size. Colour images are converted to
grayscale. Outputs go to `--out` under the same names (a folder's tree is
kept) in the input's bit depth:
  PNG, TIFF, BMP  -> PNG of the same bit depth.
  JPEG            -> 8-bit PNG: re-encoding as JPEG would add compression
                     artefacts to the image just denoised.
  DICOM           -> DICOM with the original metadata, the pixel data
                     replaced (same dtype and Bits Stored), a new SOP
                     Instance UID and a derived series.

Pixels are scaled to [0, 1] by bit depth (see `xdn.image_io.bit_depth`); for
DICOM by the Bits Stored range after the rescale slope/intercept, and
MONOCHROME1 images are inverted first so bone is bright as in training.

Models made for a fixed size (the 64x64 seed models) see overlapping tiles
blended with a linear ramp; the U-Net sees whole images up to
`--max_pixels`, and larger ones in tiles. Inputs are never overwritten; an
existing output needs `--overwrite`. A file that cannot be read or written
is reported in one line and the others are still done; the exit status is 1
if any failed.
"""

import copy
import dataclasses
import io
import os
import sys
import time
from typing import Any, Callable, Iterator, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

from xdn import image_io

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


# Any callable [B, H, W, 1] float32 in [0, 1] -> same, with `fixed_size`
# (None or the square size it needs) and `name`: `xdn.inference.Denoiser`.
Denoiser = Any

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')
DICOM_EXTENSIONS = ('.dcm', '.dicom')
UNET_TILE = 512
# U-Net tiles start at multiples of this, so that strided convolutions see
# the same pixel grid in every tile (2**depth for depth <= 5).
_TILE_ALIGN = 32


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


@dataclasses.dataclass
class Radiograph:
  """An image read from a file, as the model sees it, and how to write it."""
  pixels: np.ndarray  # [H, W] float32 in [0, 1]; bright = dense.
  to_file: Callable[[np.ndarray], bytes]  # Denoised pixels -> file contents.
  extension: str  # Of the output file.


def is_dicom(path: str) -> bool:
  """By extension, or for extension-less files by the 'DICM' magic."""
  ext = os.path.splitext(path)[1].lower()
  if ext in DICOM_EXTENSIONS:
    return True
  if ext:
    return False
  try:
    with open(path, 'rb') as f:
      return f.read(132)[128:] == b'DICM'
  except OSError:
    return False


def read_radiograph(path: str, description: str = 'xdn denoised'
                    ) -> Radiograph:
  """Reads a PNG/JPEG/TIFF/BMP or DICOM file; raises ValueError naming it."""
  if is_dicom(path):
    return _read_dicom(path, description)
  raw = image_io.read_grayscale(path)
  top = 2 ** image_io.bit_depth(raw) - 1
  dtype = raw.dtype

  def to_file(denoised: np.ndarray) -> bytes:
    out = np.round(np.clip(denoised, 0.0, 1.0) * top).astype(dtype)
    return image_io.encode_png(out)

  return Radiograph(image_io.to_float01(raw), to_file, '.png')


def _read_dicom(path: str, description: str) -> Radiograph:
  """DICOM -> [0, 1] via the modality rescale and the Bits Stored range."""
  import pydicom  # pylint: disable=g-import-not-at-top  # Slow to import.
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  try:
    ds = pydicom.dcmread(path)
  except (pydicom.errors.InvalidDicomError, OSError, ValueError) as e:
    raise ValueError(f'cannot read DICOM file {path!r}: {e}') from None
  if 'PixelData' not in ds:
    raise ValueError(f'DICOM file {path!r} holds no image (no Pixel Data)')
  if int(ds.get('SamplesPerPixel', 1)) != 1:
    raise ValueError(f'DICOM file {path!r} is a colour image '
                     f'({ds.PhotometricInterpretation}); expected a '
                     'grayscale radiograph')
  if int(ds.get('NumberOfFrames', 1) or 1) > 1:
    raise ValueError(f'DICOM file {path!r} has {ds.NumberOfFrames} frames; '
                     'only single-frame images are supported')
  try:
    raw = ds.pixel_array
  except Exception as e:  # Missing decoders raise several types.
    raise ValueError(
        f'cannot decode the pixels of DICOM file {path!r} (transfer syntax '
        f'{ds.file_meta.get("TransferSyntaxUID", "?")}): {e}; install the '
        'decoder pydicom names, or convert the file to uncompressed DICOM'
    ) from None
  bits = int(ds.get('BitsStored', raw.dtype.itemsize * 8))
  signed = int(ds.get('PixelRepresentation', 0)) == 1
  raw_lo, raw_hi = ((-2**(bits - 1), 2**(bits - 1) - 1) if signed
                    else (0, 2**bits - 1))
  slope = float(ds.get('RescaleSlope', 1.0) or 1.0)
  intercept = float(ds.get('RescaleIntercept', 0.0) or 0.0)
  # The range of modality values the file can hold (slope may be negative).
  lo, hi = sorted((raw_lo * slope + intercept, raw_hi * slope + intercept))
  monochrome1 = ds.get('PhotometricInterpretation', '') == 'MONOCHROME1'
  modality = raw.astype(np.float64) * slope + intercept
  pixels = (modality - lo) / (hi - lo)
  if monochrome1:
    pixels = 1.0 - pixels  # MONOCHROME1: high values are dark.

  def to_file(denoised: np.ndarray) -> bytes:
    values = np.clip(denoised.astype(np.float64), 0.0, 1.0)
    if monochrome1:
      values = 1.0 - values
    stored = np.round((lo + values * (hi - lo) - intercept) / slope)
    stored = np.clip(stored, raw_lo, raw_hi).astype(raw.dtype)
    out = copy.deepcopy(ds)
    out.set_pixel_data(stored, ds.PhotometricInterpretation, bits)
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    # A derived image in its own series, the same one for every image of
    # an original series, so viewers keep originals and results apart.
    series = str(ds.get('SeriesInstanceUID', ''))
    out.SeriesInstanceUID = uid.generate_uid(
        entropy_srcs=[series, description])
    image_type = list(ds.get('ImageType', ['ORIGINAL', 'PRIMARY']))
    out.ImageType = ['DERIVED'] + image_type[1:]
    out.DerivationDescription = description[:1024]
    if 'SeriesDescription' in ds:
      out.SeriesDescription = f'{ds.SeriesDescription} (denoised)'[:64]
    buffer = io.BytesIO()
    out.save_as(buffer)
    return buffer.getvalue()

  return Radiograph(pixels.astype(np.float32), to_file, '.dcm')


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


def denoise_files(denoiser: Denoiser, inputs: Sequence[str], out_dir: str, *,
                  overwrite: bool = False, **denoise_kwargs) -> int:
  """Denoises every input file into `out_dir`; returns how many failed.

  `denoise_kwargs` go to `denoise_image` (tile, overlap, batch_size,
  max_pixels).
  """
  pairs = list(find_inputs(inputs))
  input_files = {os.path.realpath(path) for path, _ in pairs}
  description = (f'denoised by xdn {getattr(denoiser, "name", "model")} '
                 f'step {getattr(denoiser, "step", "?")}')
  written, failed = set(), 0
  start = time.time()
  for count, (path, relative) in enumerate(pairs, 1):
    try:
      if not os.path.exists(path):
        raise FileNotFoundError(f'{path!r} does not exist; check the path')
      radiograph = read_radiograph(path, description)
      target = output_path(out_dir, relative, radiograph.extension)
      real = os.path.realpath(target)
      if real in input_files:
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
      tmp = target + '.tmp'
      with open(tmp, 'wb') as f:
        f.write(data)
      os.replace(tmp, target)  # A crash never leaves half a file.
      written.add(real)
      elapsed = time.time() - start
      logging.info('[%d/%d] %s -> %s (%dx%d; ETA %.0fs)', count, len(pairs),
                   path, target, *radiograph.pixels.shape,
                   elapsed / count * (len(pairs) - count))
    except (ValueError, OSError) as e:  # ImageDecodeError is a ValueError.
      failed += 1
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      # One line that names the file (most messages already do).
      logging.error('%s', message if path in message else
                    f'{path}: {message}')
  logging.info('%d of %d files denoised into %s', len(pairs) - failed,
               len(pairs), out_dir)
  return failed



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
  failed = denoise_files(denoiser, inputs, FLAGS.out,
                         overwrite=FLAGS.overwrite, tile=FLAGS.tile,
                         overlap=FLAGS.overlap, batch_size=FLAGS.batch_size,
                         max_pixels=FLAGS.max_pixels)
  if failed:
    sys.exit(1)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-denoise)."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
