"""Reading radiograph files (PNG, JPEG, TIFF, BMP, DICOM) and writing results.

`read_radiograph(path)` gives the pixels as float32 in [0, 1] and a function
that writes denoised pixels back in the file's own format and bit depth.
Shared by `xdn-denoise`, `xdn-evaluate` and the folder data source; imports
only numpy, PIL and (lazily) pydicom.

A file that cannot be read raises `image_io.ImageDecodeError` (a ValueError)
whose one-line message names the file and says what is wrong in words:
empty, not an image, truncated, damaged, too large, colour, no decoder.

DICOM follows what dcmtk and pydicom do: every transfer syntax pydicom has a
decoder for is read (little/big endian, deflated, RLE, and JPEG / JPEG-LS /
JPEG 2000 when a handler is installed); results are written as Explicit VR
Little Endian, the source syntax named in the Derivation Description. Files
without the 128-byte preamble are read when they parse as a DICOM data set.
"""

import copy
import dataclasses
import io
import logging
import math
import os
import re
from typing import Any, Callable, Optional

import numpy as np

from xdn.io import dicom_derived
from xdn.io import images as image_io

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')
DICOM_EXTENSIONS = ('.dcm', '.dicom')
# Leading bytes of the image formats PIL reads here: such a file is decoded
# as an image whatever its extension says.
_IMAGE_MAGIC = (b'\x89PNG', b'\xff\xd8\xff', b'II*\x00', b'MM\x00*', b'BM',
                b'GIF8')
# Value representations whose bytes are words of this size (byte-swapped when
# a big-endian file is written as little endian).
_WORD_SIZES = {'OW': 2, 'OF': 4, 'OL': 4, 'OD': 8, 'OV': 8}
# Photometric Interpretations of colour images (DICOM PS3.3 C.7.6.3.1.2).
_COLOUR = ('RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_PARTIAL_422',
           'YBR_PARTIAL_420', 'YBR_ICT', 'YBR_RCT', 'PALETTE COLOR', 'HSV',
           'ARGB', 'CMYK', 'XYB')
# pydicom's dependency names -> what to `pip install`.
_PIP_NAMES = {'gdcm': 'python-gdcm'}
_HINT = 're-export the file, or leave it out'


def is_radiograph_file(path: str) -> bool:
  """Whether `path` names an image or DICOM file xdn reads (by extension)."""
  return (os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS or
          is_dicom(path))


@dataclasses.dataclass
class Radiograph:
  """An image read from a file, as the model sees it, and how to write it."""
  pixels: np.ndarray  # [H, W] float32 in [0, 1]; bright = dense.
  to_file: Callable[[np.ndarray], bytes]  # Denoised pixels -> file contents.
  extension: str  # Of the output file.


def quiet_pydicom_logs() -> None:
  """Keeps pydicom's own error logs (with tracebacks) out of the output.

  pydicom logs each failed decoder plugin with its traceback; xdn reports
  the file in one line instead, the causes chained to the exception.
  """
  logging.getLogger('pydicom').setLevel(logging.CRITICAL)


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


def pixel_spacing_mm(path: str) -> Optional[float]:
  """A DICOM file's Pixel Spacing (else Imager Pixel Spacing) along y in
  mm; None for other files and where the header states none (or 0) or
  cannot be read: the spacing is a nicety, measurements work in pixels."""
  if not is_dicom(path):
    return None
  try:
    import pydicom  # pylint: disable=g-import-not-at-top  # Slow to import.
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in ('PixelSpacing', 'ImagerPixelSpacing'):
      value = ds.get(keyword)
      if value:
        spacing = float(value[0])
        return spacing if spacing > 0 else None
  except Exception:  # pylint: disable=broad-except  # Any type, if damaged.
    return None
  return None


def read_radiograph(path: str, description: str = 'xdn denoised'
                    ) -> Radiograph:
  """Reads a PNG/JPEG/TIFF/BMP or DICOM file; raises ImageDecodeError.

  The format is told by the contents where they are clear (a DICOM file
  named .png is read as DICOM, a PNG named .dcm as a PNG), else by the
  extension.
  """
  head = _head(path)
  if head[128:132] == b'DICM' or (is_dicom(path) and
                                  not head.startswith(_IMAGE_MAGIC)):
    return _read_dicom(path, description)
  raw = image_io.read_grayscale(path)
  top = 2 ** image_io.bit_depth(raw) - 1
  dtype = raw.dtype

  def to_file(denoised: np.ndarray) -> bytes:
    _check_shape(denoised, raw.shape, path)
    out = np.round(np.clip(denoised, 0.0, 1.0) * top).astype(dtype)
    # Fast zlib: lossless either way, and the encode no longer costs as
    # much as a tenth of the denoising.
    return image_io.encode_png(out, compress_level=1)

  return Radiograph(image_io.to_float01(raw), to_file, '.png')


def _head(path: str) -> bytes:
  """The first 132 bytes (DICOM preamble and magic); worded OSErrors."""
  try:
    with open(path, 'rb') as f:
      return f.read(132)
  except FileNotFoundError:
    raise FileNotFoundError(
        f'file {path!r} does not exist; check the path') from None
  except IsADirectoryError:
    raise IsADirectoryError(
        f'{path!r} is a folder; expected an image file') from None
  except PermissionError:
    raise PermissionError(
        f'file {path!r} cannot be read (permission denied); check its '
        'permissions') from None


def _check_shape(denoised: np.ndarray, shape: tuple[int, ...],
                 path: str) -> None:
  if np.shape(denoised) != shape:
    raise ValueError(f'denoised image of {path!r} has shape '
                     f'{np.shape(denoised)}; expected {shape}')


# ------------------------------------------------------------------ DICOM


def _read_dicom(path: str, description: str) -> Radiograph:
  """DICOM -> [0, 1] via the modality rescale and the Bits Stored range."""
  from pydicom import uid  # pylint: disable=g-import-not-at-top  # Slow.
  ds = _read_dataset(path)
  try:
    syntax = _check_image(ds, path)
    raw = _decode_pixels(ds, syntax, path)
    bits = int(ds.get('BitsStored') or ds.BitsAllocated)
    signed = int(ds.get('PixelRepresentation', 0) or 0) == 1
    slope = _number(ds, 'RescaleSlope', 1.0, path)
    intercept = _number(ds, 'RescaleIntercept', 0.0, path)
    photometric = str(ds.PhotometricInterpretation).strip()
  except (image_io.ImageDecodeError, MemoryError):
    raise
  except Exception as e:  # pydicom parses values lazily: any type.
    raise _dicom_error(path, 'its header is damaged', e) from e
  raw_lo, raw_hi = ((-2**(bits - 1), 2**(bits - 1) - 1) if signed
                    else (0, 2**bits - 1))
  # The range of modality values the file can hold (slope may be negative).
  lo, hi = sorted((raw_lo * slope + intercept, raw_hi * slope + intercept))
  monochrome1 = photometric == 'MONOCHROME1'
  modality = raw.astype(np.float64) * slope + intercept
  # Clipped: stray bits above Bits Stored must not leave [0, 1].
  pixels = np.clip((modality - lo) / (hi - lo), 0.0, 1.0)
  if monochrome1:
    pixels = 1.0 - pixels  # MONOCHROME1: high values are dark.
  # Written in native byte order whatever the source's (pydicom gives
  # big-endian arrays for big-endian files).
  dtype = np.dtype(f'{"i" if signed else "u"}{int(ds.BitsAllocated) // 8}')
  derivation = f'{description}; decoded from {syntax.name} ({syntax})'

  def to_file(denoised: np.ndarray) -> bytes:
    _check_shape(denoised, raw.shape, path)
    values = np.clip(np.asarray(denoised, np.float64), 0.0, 1.0)
    if monochrome1:
      values = 1.0 - values
    stored = np.round((lo + values * (hi - lo) - intercept) / slope)
    stored = np.clip(stored, raw_lo, raw_hi).astype(dtype)
    try:
      return _encode_dicom(ds, stored, bits, syntax, derivation, description)
    except MemoryError:
      raise
    except Exception as e:  # Values of a damaged header pydicom cannot write.
      raise _dicom_error(
          path, 'its header cannot be written back', e) from e

  return Radiograph(pixels.astype(np.float32), to_file, '.dcm')


def _read_dataset(path: str) -> Any:
  """pydicom.dcmread, also for bare data sets without the preamble."""
  import pydicom  # pylint: disable=g-import-not-at-top  # Slow to import.
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  if os.path.getsize(path) == 0:
    raise image_io.ImageDecodeError(
        f'cannot read DICOM file {path!r}: the file is empty (0 bytes); '
        f'{_HINT}.')
  try:
    return pydicom.dcmread(path)
  except pydicom.errors.InvalidDicomError:
    pass  # No 'DICM' marker: older files are often a bare data set.
  except MemoryError:
    raise
  except Exception as e:  # Damaged files raise many types in pydicom.
    raise _dicom_error(path, 'it is damaged', e) from e
  # force=True parses any bytes as tags; keep the result only if it reads as
  # an image (or at least a DICOM object with a SOP class), as dcmtk's
  # `+f` reading of files without meta information would.
  try:
    ds = pydicom.dcmread(path, force=True)
    plausible = (('PixelData' in ds and 'Rows' in ds and 'Columns' in ds) or
                 _is_uid(str(ds.get('SOPClassUID', ''))))
  except MemoryError:
    raise
  except Exception:  # pylint: disable=broad-except  # Garbage: refused below.
    plausible = False
  if not plausible:
    raise image_io.ImageDecodeError(
        f'cannot read {path!r}: it is not a DICOM file (no "DICM" marker, '
        f'and it does not parse as a DICOM data set); {_HINT}.')
  if 'TransferSyntaxUID' not in ds.file_meta:
    implicit, little = ds.original_encoding
    ds.file_meta.TransferSyntaxUID = (
        uid.ImplicitVRLittleEndian if implicit else
        uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
  return ds


def _check_image(ds: Any, path: str) -> Any:
  """Refuses what is not one grayscale frame; returns the transfer syntax."""
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  sop_class = uid.UID(str(ds.get('SOPClassUID', '') or ''))
  if (sop_class == uid.MediaStorageDirectoryStorage or
      'DirectoryRecordSequence' in ds):
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} is a DICOMDIR (an index of other files), not '
        'an image; pass the image files it lists, or their folder')
  if 'PixelData' not in ds:
    kind = (sop_class.name if sop_class.is_valid and sop_class.name !=
            str(sop_class) else 'a non-image object')
    if 'FloatPixelData' in ds or 'DoubleFloatPixelData' in ds:
      kind = 'floating-point pixel data, which xdn does not read'
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} holds no image (no Pixel Data; it is {kind}); '
        'pass radiograph images')
  photometric = str(ds.get('PhotometricInterpretation', '') or '').strip()
  samples = int(ds.get('SamplesPerPixel', 1) or 1)
  if samples != 1 or photometric in _COLOUR:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} is a colour image ({photometric or "?"}, '
        f'{samples} sample{"s" if samples != 1 else ""} per pixel); xdn '
        'denoises grayscale (MONOCHROME1/2) radiographs; export it as '
        'grayscale')
  if photometric not in ('MONOCHROME1', 'MONOCHROME2'):
    which = (f'Photometric Interpretation {photometric[:32]!r}' if photometric
             else 'no Photometric Interpretation')
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has {which}, not MONOCHROME1/2, so its pixels '
        f'cannot be interpreted; {_HINT}.')
  frames = int(ds.get('NumberOfFrames', 1) or 1)
  if frames != 1:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has {frames} frames; only single-frame images '
        'are supported; split it into frames first')
  if 'Rows' not in ds or 'Columns' not in ds:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has pixel data but no Rows/Columns, so its '
        f'size is unknown; {_HINT}.')
  rows, columns = int(ds.Rows), int(ds.Columns)
  image_io.check_dimensions(columns, rows, path)
  allocated = int(ds.get('BitsAllocated') or 0)
  if allocated not in (8, 16):
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has {allocated} bits allocated per pixel; xdn '
        'reads 8- and 16-bit images')
  stored = int(ds.get('BitsStored') or allocated)
  if not 1 <= stored <= allocated:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} declares {stored} bits stored in {allocated} '
        f'bits allocated, which contradict each other; {_HINT}.')
  if int(ds.get('PixelRepresentation', 0) or 0) not in (0, 1):
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has Pixel Representation '
        f'{ds.PixelRepresentation}; expected 0 (unsigned) or 1 (signed)')
  syntax = uid.UID(str(ds.file_meta.TransferSyntaxUID))
  if not syntax.is_transfer_syntax:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} names an unknown transfer syntax '
        f'{str(syntax)[:64]!r}; {_HINT}.')
  if not syntax.is_compressed:
    expected = rows * columns * allocated // 8
    found = len(ds.PixelData)
    if found < expected:
      raise image_io.ImageDecodeError(
          f'DICOM file {path!r} is truncated: its pixel data holds {found} '
          f'bytes, and {rows}x{columns} pixels of {allocated} bits need '
          f'{expected}; {_HINT}.')
  return syntax


def _decode_pixels(ds: Any, syntax: Any, path: str) -> np.ndarray:
  """`ds.pixel_array`, with one-line errors naming a missing decoder."""
  from pydicom import pixels  # pylint: disable=g-import-not-at-top
  try:
    decoder = pixels.get_decoder(syntax)
  except NotImplementedError:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} uses transfer syntax {syntax.name}, which '
        'pydicom cannot decode; convert it to uncompressed DICOM (e.g. '
        "dcmtk's dcmconv +te)") from None
  install = _install_hint(decoder.missing_dependencies)
  if not decoder.is_available:
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} is compressed as {syntax.name} and no decoder '
        f'for it is installed; {install}, or convert it to uncompressed DICOM')
  try:
    raw = ds.pixel_array
  except MemoryError:
    raise
  except Exception as e:  # Each decoder plugin raises its own types.
    # pydicom lists each plugin's reason on its own line after a header.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    reason = image_io.clean_message(
        Exception('; '.join(lines[1:] if len(lines) > 1 else lines)))
    hint = f'; other decoders may read it: {install}' if install else ''
    raise image_io.ImageDecodeError(
        f'cannot decode the {syntax.name} pixel data of DICOM file {path!r}: '
        f'{reason or type(e).__name__}{hint}') from e
  rows, columns = int(ds.Rows), int(ds.Columns)
  if raw.shape != (rows, columns) or raw.dtype.kind not in 'iu':
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} decoded to {raw.dtype} pixels of shape '
        f'{raw.shape}, but its header declares {rows}x{columns}; {_HINT}.')
  return raw


def _install_hint(missing: list[str]) -> str:
  """pydicom's 'pylibjpeg - requires pylibjpeg>=2.0 and ...' -> pip lines."""
  options = []
  for line in missing:
    needs = line.split('requires', 1)[-1]
    names = [re.split(r'[<>=!~ ]', n.strip())[0] for n in needs.split(' and ')]
    names = [_PIP_NAMES.get(n, n) for n in names if n and n != 'numpy']
    if names:
      options.append('pip install ' + ' '.join(names))
  return ', or '.join(options)


def _encode_dicom(ds: Any, stored: np.ndarray, bits: int, syntax: Any,
                  derivation: str, description: str) -> bytes:
  """The source data set with new pixels, as Explicit VR Little Endian."""
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  out = copy.deepcopy(ds)
  if not syntax.is_little_endian:
    _swap_words(out)  # pydicom re-encodes numbers, not binary values.
  out.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  for tag in [t for t in out.keys() if t.group == 2]:
    del out[tag]  # File meta elements are invalid in the data set itself.
  # The instance UID comes from dicom_derived (stable across reruns), not
  # a random one.
  out.set_pixel_data(stored, str(ds.PhotometricInterpretation).strip(), bits,
                     generate_instance_uid=False)
  dicom_derived.derive(ds, out, stored, description, derivation)
  buffer = io.BytesIO()
  pydicom.dcmwrite(buffer, out, implicit_vr=False, little_endian=True,
                   enforce_file_format=True)
  return buffer.getvalue()


def _swap_words(ds: Any) -> None:
  """Byte-swaps binary word values (OW, OF, ...) read from a big-endian file."""
  for element in ds.iterall():
    size = _WORD_SIZES.get(element.VR)
    if (size and element.tag != 0x7FE00010 and
        isinstance(element.value, bytes) and len(element.value) % size == 0):
      words = np.frombuffer(element.value, f'>u{size}')
      element.value = words.astype(f'<u{size}').tobytes()


def _number(ds: Any, keyword: str, default: float, path: str) -> float:
  """A numeric header value (empty: `default`); refuses unusable values."""
  value = ds.get(keyword)
  if value is None or value == '':
    return default
  try:
    number = float(value)
  except (TypeError, ValueError):
    number = math.nan
  if not math.isfinite(number) or (keyword == 'RescaleSlope' and
                                   number == 0):
    raise image_io.ImageDecodeError(
        f'DICOM file {path!r} has {keyword} {str(value)[:32]!r}, which is '
        f'not a usable number; {_HINT}.')
  return number


def _is_uid(text: str) -> bool:
  return bool(re.fullmatch(r'[0-2](\.(0|[1-9][0-9]*))+', text)) and len(
      text) <= 64


def _dicom_error(path: str, what: str,
                 error: Exception) -> image_io.ImageDecodeError:
  """A one-line error for a DICOM file pydicom failed on."""
  message = image_io.clean_message(error)
  if isinstance(error, EOFError) or re.search(
      r'truncat|end of file|unexpected end|ended|fewer bytes|not enough',
      message, re.IGNORECASE):
    what = 'the file is truncated'
  return image_io.ImageDecodeError(
      f'cannot read DICOM file {path!r}: {what} '
      f'({message or type(error).__name__}); {_HINT}.')
