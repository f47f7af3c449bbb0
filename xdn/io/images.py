"""Decoding radiographs from image files into 2-D grayscale numpy arrays.

Shared by the TFDS builders (`xdn.data`) and the denoising CLI. Only PIL and
numpy are imported here, so this module is cheap to import.

Pixel conventions:
  * `decode_grayscale` keeps the native bit depth: uint8 for 8-bit images,
    uint16 for 16-bit ones (also 10/12/14-bit data stored in 16-bit files).
  * `to_uint8` / `to_float01` map those to uint8 / float32 in [0, 1] by
    scaling with the image's bit depth (see `bit_depth`), never by clipping.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
from PIL import Image
from PIL import ImageOps

# Container bit depths a uint16 radiograph is assumed to use (see `bit_depth`).
_BIT_DEPTHS = (8, 10, 12, 14, 16)
# JPEG markers: start of scan and end of image.
_JPEG_SOS = b'\xff\xda'
_JPEG_EOI = b'\xff\xd9'
_HINT = 're-download or re-export the file, or leave it out'
# Images larger than this are refused before their pixels are decoded, so a
# small file declaring huge dimensions (a decompression bomb) cannot exhaust
# memory. The values are ImageMagick's default policy (width and height
# 16KP, area 128MP); the largest radiographs (mammograms) are ~25 MP.
MAX_SIDE = 16384
MAX_PIXELS = 128 * 2**20
# Phrases PIL and its codecs use for data that ends early.
_TRUNCATED = re.compile(
    r'truncat|premature end|ends before|end of (file|stream|data)|'
    r'broken data stream|not enough data|unexpected end|buffer is not large',
    re.IGNORECASE)
# `<_io.BytesIO object at 0x7f...>` and the like: meaningless to a user.
_OBJECT_REPR = re.compile(r'\s*<[^<>]* at 0x[0-9a-fA-F]+>')


class ImageDecodeError(ValueError):
  """An image file could not be decoded (corrupt, truncated or unsupported).

  The message names the file and says in words what is wrong with it.
  """


def check_dimensions(width: int, height: int, name: str) -> None:
  """Raises ImageDecodeError if a declared image size is empty or too large."""
  if width <= 0 or height <= 0:
    raise ImageDecodeError(
        f'cannot decode image {name!r}: it declares {width}x{height} pixels, '
        f'an empty image; {_HINT}.')
  if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
    raise ImageDecodeError(
        f'cannot decode image {name!r}: it is too large ({width}x{height} '
        f'pixels; the limit is {MAX_SIDE} per side and '
        f'{MAX_PIXELS // 2**20} megapixels, which protects memory from '
        'damaged or malicious files); crop or downscale it first.')


def clean_message(error: BaseException) -> str:
  """The first line of an exception's message, without Python object reprs."""
  text = _OBJECT_REPR.sub('', str(error)).strip()
  return text.splitlines()[0].strip() if text else ''


def decode_grayscale(data: bytes, name: str) -> np.ndarray:
  """Decodes PNG/JPEG/TIFF/BMP/... bytes to a 2-D grayscale array.

  Args:
    data: the encoded file contents.
    name: file name used in error messages.

  Returns:
    `[H, W]` uint8 for 8-bit images, uint16 for deeper ones. Colour images are
    reduced to one channel: an RGB(A) image whose channels are equal (grayscale
    saved as RGB) gives that channel exactly; otherwise ITU-R 601 luma. Alpha
    is ignored.

  Raises:
    ImageDecodeError: the data is empty, not an image, truncated, damaged or
      larger than `MAX_SIDE` / `MAX_PIXELS`.
  """
  if not data:
    raise ImageDecodeError(
        f'cannot decode image {name!r}: the file is empty (0 bytes); {_HINT}.')
  try:
    with Image.open(io.BytesIO(data)) as image:
      # Only the header is read so far: refuse huge images before decoding.
      check_dimensions(*image.size, name)
      # `load()` decodes everything now, so truncation raises here (PIL's
      # LOAD_TRUNCATED_IMAGES is left at its default, False).
      image.load()
      if image.format == 'JPEG' and not _jpeg_complete(data):
        raise OSError('JPEG data ends before the end-of-image marker')
      image = ImageOps.exif_transpose(image)
      array = _to_gray_array(image)
  except ImageDecodeError:
    raise
  except MemoryError:
    raise  # Not the file's fault; the caller decides.
  except Image.DecompressionBombError as e:  # Raised by Image.open itself.
    raise ImageDecodeError(
        f'cannot decode image {name!r}: it is too large (it declares more '
        f'than {MAX_PIXELS // 2**20} megapixels, the limit that protects '
        'memory from damaged or malicious files); crop or downscale it '
        'first.') from e
  except Exception as e:  # PIL and its codecs raise many types for bad data.
    raise ImageDecodeError(
        f'cannot decode image {name!r}: {_describe(e, data)}; {_HINT}.'
    ) from e
  if array.ndim != 2 or 0 in array.shape:
    raise ImageDecodeError(
        f'image {name!r} decoded to shape {array.shape}; expected a 2-D '
        f'grayscale image; {_HINT}.'
    )
  return array


def _describe(error: Exception, data: bytes) -> str:
  """What is wrong with undecodable image data, in words."""
  if isinstance(error, Image.UnidentifiedImageError):
    if data[128:132] == b'DICM':
      return 'it is a DICOM file, not an image; name it .dcm'
    return ('it is not an image: its contents match no format PIL reads '
            '(PNG, JPEG, TIFF, BMP, ...)')
  message = clean_message(error)
  if isinstance(error, EOFError) or _TRUNCATED.search(message):
    return 'the file is truncated: it ends before the image data does'
  return f'the image data is damaged ({message or type(error).__name__})'


def read_grayscale(path: str | os.PathLike[str]) -> np.ndarray:
  """Reads an image file with `decode_grayscale`."""
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(
        f'image file {path!r} does not exist; check the path.'
    ) from None
  except IsADirectoryError:
    raise IsADirectoryError(
        f'{path!r} is a folder; expected an image file.'
    ) from None
  return decode_grayscale(data, path)


def bit_depth(img: np.ndarray) -> int:
  """Bits per pixel of an integer image: 8 for uint8, else 8/10/12/14/16.

  For uint16 images the smallest common detector depth holding the maximum
  value is used, so a 12-bit radiograph stored in 16 bits maps its full
  0..4095 range to [0, 1] rather than to [0, 1/16].
  """
  img = np.asarray(img)
  if img.dtype == np.uint8:
    return 8
  if img.dtype != np.uint16:
    raise TypeError(f'expected a uint8 or uint16 image, got {img.dtype}.')
  peak = int(img.max()) if img.size else 0
  return next(b for b in _BIT_DEPTHS if peak < 2**b)


def to_uint8(img: np.ndarray) -> np.ndarray:
  """uint8/uint16 (or float in [0, 1]) image -> uint8, rounded.

  uint16 values are scaled by `255 / (2**bit_depth(img) - 1)`.
  """
  img = np.asarray(img)
  if img.dtype == np.uint8:
    return img
  if img.dtype == np.uint16:
    top = 2 ** bit_depth(img) - 1
    return ((img.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)
  if np.issubdtype(img.dtype, np.floating):
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
  raise TypeError(f'expected a uint8, uint16 or float image, got {img.dtype}.')


def to_float01(img: np.ndarray) -> np.ndarray:
  """uint8/uint16 image -> float32 in [0, 1] (divided by 2**bit_depth - 1)."""
  img = np.asarray(img)
  return np.divide(img, np.float32(2 ** bit_depth(img) - 1), dtype=np.float32)


def encode_png(img: np.ndarray, compress_level: int = 6) -> bytes:
  """Lossless PNG of a `[H, W]` (or `[H, W, 1]`) uint8 or uint16 image.

  `compress_level` is zlib's (0-9): 1 encodes a 2048x2048 16-bit
  radiograph in about 0.6x the time of the default 6, for files ~3 %
  larger (`xdn-denoise` writes with 1)."""
  img = np.asarray(img)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
    raise ValueError(
        f'encode_png expects a 2-D uint8 or uint16 image, got {img.dtype} '
        f'{img.shape}.')
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, 'PNG', compress_level=compress_level)
  return buf.getvalue()


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
  """Centre square crop of a `[H, W]` uint8 image, resized to `[size, size]`.

  Equivalent to resizing the shorter side to `size` and centre-cropping the
  longer one. Uses Lanczos resampling, which is antialiased when shrinking.
  """
  img = np.asarray(img)
  if img.dtype != np.uint8 or img.ndim != 2:
    raise ValueError(
        f'resize_square expects a 2-D uint8 image, got {img.dtype} '
        f'{img.shape}; convert with to_uint8 first.'
    )
  if size < 1:
    raise ValueError(f'size must be positive, got {size}.')
  h, w = img.shape
  side = min(h, w)
  if h == w == size:
    return img.copy()
  top, left = (h - side) / 2, (w - side) / 2
  # Cropping through `box` lets the filter see pixels just outside the crop.
  out = Image.fromarray(img).resize(
      (size, size), Image.Resampling.LANCZOS,
      box=(left, top, left + side, top + side))
  return np.asarray(out)


def _jpeg_complete(data: bytes) -> bool:
  """Whether an end-of-image marker follows the last start-of-scan marker."""
  return data.rfind(_JPEG_EOI) > data.rfind(_JPEG_SOS)


def _to_gray_array(image: Image.Image) -> np.ndarray:
  """PIL image of any mode -> 2-D uint8 or uint16 array."""
  mode = image.mode
  if mode == 'L':
    return np.asarray(image)
  if mode.startswith('I;16'):
    return np.asarray(image).astype(np.uint16)  # Native byte order.
  if mode in ('I', 'F'):
    return _wide_to_uint16(np.asarray(image))
  if mode == 'LA':
    return np.asarray(image)[..., 0].copy()
  if mode in ('RGB', 'RGBA', 'RGBX'):
    rgb = np.asarray(image)[..., :3]
    if (rgb == rgb[..., :1]).all():
      return rgb[..., 0].copy()  # Grayscale stored as RGB: exact.
    return np.asarray(image.convert('RGB').convert('L'))
  if mode == '1':
    return np.asarray(image.convert('L'))
  if mode in ('P', 'PA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'RGBa', 'La'):
    return _to_gray_array(image.convert('RGB'))
  raise ValueError(f'unsupported PIL image mode {mode!r}')


def _wide_to_uint16(array: np.ndarray) -> np.ndarray:
  """32-bit int or float pixels -> uint16, rescaling only when out of range."""
  if not np.isfinite(array).all():
    raise ValueError('image has NaN or infinite pixels')
  lo, hi = float(array.min()), float(array.max())
  if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
    return np.round(array * 65535.0).astype(np.uint16)  # Float in [0, 1].
  if lo >= 0 and hi <= 65535:
    return np.round(array).astype(np.uint16)  # 16-bit data in a wide type.
  scale = 65535.0 / (hi - lo) if hi > lo else 0.0
  return np.round((array.astype(np.float64) - lo) * scale).astype(np.uint16)
