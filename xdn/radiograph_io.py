"""Reading radiograph files (PNG, JPEG, TIFF, BMP, DICOM) and writing results.

`read_radiograph(path)` gives the pixels as float32 in [0, 1] and a function
that writes denoised pixels back in the file's own format and bit depth.
Shared by `xdn-denoise`, `xdn-evaluate` and the folder data source; imports
only numpy, PIL and (lazily) pydicom.
"""

import copy
import dataclasses
import io
import os
from typing import Callable

import numpy as np

from xdn import image_io

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')
DICOM_EXTENSIONS = ('.dcm', '.dicom')


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
