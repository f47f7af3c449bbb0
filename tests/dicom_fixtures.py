"""Small DICOM files in any transfer syntax the environment can encode."""

import copy
import io
import os
import tempfile

import numpy as np
from PIL import Image
import pydicom
from pydicom import encaps
from pydicom import uid
from pydicom.dataelem import DataElement

# pydicom encodes these itself (RLE with its own numpy encoder).
NATIVE = (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian,
          uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian,
          uid.RLELossless)
# Compressed syntaxes GDCM encodes (python-gdcm), by GDCM's name.
_GDCM_NAMES = {
    uid.JPEGLossless: 'JPEGLosslessProcess14',
    uid.JPEGLosslessSV1: 'JPEGLosslessProcess14_1',
    uid.JPEGLSLossless: 'JPEGLSLossless',
    uid.JPEGLSNearLossless: 'JPEGLSNearLossless',
    uid.JPEG2000Lossless: 'JPEG2000Lossless',
    uid.JPEG2000: 'JPEG2000',
}
LUT = np.array([0, 7, 300, 65535], np.uint16)


def gradient(h: int, w: int, top: int, seed: int = 0) -> np.ndarray:
  """An integer image using most of [0, top], with some texture."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  image = (xx + yy) / max(h + w - 2, 1) * 0.8 + rng.uniform(0, 0.2, (h, w))
  return np.round(image * top).astype(np.int64)


def dataset(pixels: np.ndarray, photometric: str = 'MONOCHROME2',
            bits: int = 0, slope: float = 1.0, intercept: float = 0.0
            ) -> pydicom.FileDataset:
  """A DX image data set (Explicit VR Little Endian) with a window and VOI LUT.

  `pixels`: [H, W] uint8/uint16/int8/int16; `bits`: Bits Stored (0: all).
  """
  ds = pydicom.Dataset()
  ds.file_meta = pydicom.dataset.FileMetaDataset()
  ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
  ds.SOPInstanceUID = uid.generate_uid()
  ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.SeriesInstanceUID = uid.generate_uid()
  ds.PatientName = 'Test^Patient'
  ds.Modality = 'DX'
  ds.ImageType = ['ORIGINAL', 'PRIMARY']
  ds.RescaleSlope = slope
  ds.RescaleIntercept = intercept
  ds.WindowCenter = 1000
  ds.WindowWidth = 2000
  item = pydicom.Dataset()
  item.LUTDescriptor = [len(LUT), 0, 16]
  # OW words: a big-endian source must have them byte-swapped when written.
  item.add(DataElement(0x00283006, 'OW', LUT.astype('<u2').tobytes()))
  ds.VOILUTSequence = [item]
  ds.set_pixel_data(pixels, photometric, bits or pixels.dtype.itemsize * 8,
                    generate_instance_uid=False)
  return ds


def encode(ds: pydicom.Dataset, syntax: str, preamble: bool = True) -> bytes:
  """`ds` (Explicit VR Little Endian) as file bytes in `syntax`.

  Raises NotImplementedError if nothing installed encodes `syntax`.
  """
  ds = copy.deepcopy(ds)
  if syntax == uid.ExplicitVRBigEndian:
    pixels = ds.pixel_array
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder('>')).tobytes()
    for item in ds.get('VOILUTSequence', []):
      item.LUTData = np.frombuffer(item.LUTData, '<u2').astype('>u2').tobytes()
  elif syntax == uid.RLELossless:
    ds.compress(uid.RLELossless, generate_instance_uid=False)
  elif syntax == uid.JPEGBaseline8Bit:
    jpeg = io.BytesIO()
    Image.fromarray(ds.pixel_array.astype(np.uint8)).save(jpeg, 'JPEG',
                                                           quality=95)
    ds.PixelData = encaps.encapsulate([jpeg.getvalue()])
    ds['PixelData'].VR = 'OB'
    ds['PixelData'].is_undefined_length = True
    ds.LossyImageCompression = '01'
  elif syntax in _GDCM_NAMES:
    return _gdcm_encode(encode(ds, uid.ExplicitVRLittleEndian), syntax)
  elif syntax not in NATIVE:
    raise NotImplementedError(f'no encoder for {syntax}')
  ds.file_meta.TransferSyntaxUID = syntax
  buffer = io.BytesIO()
  if preamble:
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
  else:  # A bare data set, as some old systems write.
    pydicom.dcmwrite(buffer, ds, implicit_vr=syntax == uid.ImplicitVRLittleEndian,
                     little_endian=syntax != uid.ExplicitVRBigEndian)
  return buffer.getvalue()


def _gdcm_encode(data: bytes, syntax: str) -> bytes:
  try:
    import gdcm  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise NotImplementedError(f'{syntax.name} needs python-gdcm') from None
  with tempfile.TemporaryDirectory() as tmp:
    source, target = os.path.join(tmp, 'in.dcm'), os.path.join(tmp, 'out.dcm')
    with open(source, 'wb') as f:
      f.write(data)
    reader = gdcm.ImageReader()
    reader.SetFileName(source)
    if not reader.Read():
      raise RuntimeError('gdcm cannot read its input')
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(
        getattr(gdcm.TransferSyntax, _GDCM_NAMES[syntax])))
    change.SetInput(reader.GetImage())
    if not change.Change():
      raise NotImplementedError(f'gdcm cannot encode {syntax.name}')
    writer = gdcm.ImageWriter()
    writer.SetFileName(target)
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
      raise RuntimeError('gdcm cannot write its output')
    with open(target, 'rb') as f:
      return f.read()
