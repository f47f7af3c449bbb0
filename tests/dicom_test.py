"""DICOM through xdn-denoise: every transfer syntax, refusals in one line.

Transfer syntaxes (encoded here by pydicom, Pillow or python-gdcm; a syntax
with no encoder installed is skipped, one with no decoder must give a line
naming the package to install):
  Implicit/Explicit VR Little Endian, Explicit VR Big Endian, Deflated,
  RLE Lossless, JPEG Baseline, JPEG Lossless (process 14 and SV1), JPEG-LS
  (lossless and near-lossless), JPEG 2000 (lossless and lossy), and
  pydicom's own 12-bit JPEG Extended sample file.
"""

import io
import os
import re

import numpy as np
from PIL import Image
import pydicom
from pydicom import pixels as pydicom_pixels
from pydicom import uid
from pydicom.data import get_testdata_file
import pytest

from tests import dicom_fixtures as df
from xdn.inference import folder as denoise
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io

LOSSY = (uid.JPEGBaseline8Bit, uid.JPEGLSNearLossless, uid.JPEG2000)
SYNTAXES = df.NATIVE + (uid.JPEGBaseline8Bit, uid.JPEGLossless,
                        uid.JPEGLosslessSV1, uid.JPEGLSLossless,
                        uid.JPEGLSNearLossless, uid.JPEG2000Lossless,
                        uid.JPEG2000)


class IdentityDenoiser:
  fixed_size, name, step = None, 'identity', 0

  def __call__(self, images):
    return images


def _errors(caplog):
  return [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']


def _denoise(tmp_path, name: str, data: bytes, caplog):
  """Writes `data` as in/name, denoises it; (failed count, error lines)."""
  folder = tmp_path / 'in'
  folder.mkdir(exist_ok=True)
  (folder / name).write_bytes(data)
  caplog.clear()
  with caplog.at_level('ERROR'):
    failed = denoise.denoise_files(IdentityDenoiser(), [str(folder / name)],
                                   str(tmp_path / 'out'), overwrite=True)
  return failed, _errors(caplog)


@pytest.mark.parametrize('syntax', SYNTAXES, ids=lambda s: s.name)
def test_every_transfer_syntax(tmp_path, caplog, syntax):
  eight = syntax == uid.JPEGBaseline8Bit
  raw = df.gradient(40, 56, 255 if eight else 4095).astype(
      np.uint8 if eight else np.uint16)
  source = df.dataset(raw, bits=8 if eight else 12, slope=2.0,
                      intercept=-50.0)
  try:
    data = df.encode(source, syntax)
  except NotImplementedError as e:
    pytest.skip(f'no encoder installed: {e}')
  original = pydicom.dcmread(io.BytesIO(data))
  assert original.file_meta.TransferSyntaxUID == syntax
  failed, errors = _denoise(tmp_path, 'x.dcm', data, caplog)
  if not pydicom_pixels.get_decoder(syntax).is_available:
    assert failed == 1 and len(errors) == 1
    assert 'no decoder' in errors[0] and 'pip install' in errors[0]
    return
  assert failed == 0, errors
  result = pydicom.dcmread(tmp_path / 'out' / 'x.dcm')
  assert result.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
  assert f'decoded from {syntax.name}' in result.DerivationDescription
  decoded = original.pixel_array
  if syntax not in LOSSY:
    np.testing.assert_array_equal(decoded, raw)
  # The identity model gives back the decoded pixels exactly.
  assert result.pixel_array.dtype == decoded.dtype.newbyteorder('=')
  np.testing.assert_array_equal(result.pixel_array, decoded)
  # Metadata, window and VOI LUT are kept untouched.
  assert result.PatientName == 'Test^Patient'
  assert (result.RescaleSlope, result.RescaleIntercept) == (2.0, -50.0)
  assert (result.WindowCenter, result.WindowWidth) == (1000, 2000)
  lut = result.VOILUTSequence[0].LUTData
  np.testing.assert_array_equal(np.frombuffer(lut, '<u2'), df.LUT)
  assert result.SOPInstanceUID != original.SOPInstanceUID


def test_big_endian_ct_does_not_stop_the_batch(tmp_path, caplog):
  """The reported case: a 512x512 signed CT in Explicit VR Big Endian."""
  folder = tmp_path / 'in'
  folder.mkdir()
  ct = (df.gradient(512, 512, 4095) - 1024).astype(np.int16)
  (folder / 'ct.dcm').write_bytes(df.encode(
      df.dataset(ct, bits=16, intercept=-1024.0), uid.ExplicitVRBigEndian))
  for i in range(9):
    Image.fromarray(df.gradient(20, 30, 255, i).astype(np.uint8)).save(
        folder / f'{i}.png')
  with caplog.at_level('ERROR'):
    failed = denoise.denoise_files(IdentityDenoiser(), [str(folder)],
                                   str(tmp_path / 'out'))
  assert failed == 0, _errors(caplog)
  assert len(os.listdir(tmp_path / 'out')) == 10
  result = pydicom.dcmread(tmp_path / 'out' / 'ct.dcm')
  assert result.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
  assert result.PixelRepresentation == 1
  np.testing.assert_array_equal(result.pixel_array, ct)


@pytest.mark.parametrize('syntax', [uid.ImplicitVRLittleEndian,
                                    uid.ExplicitVRLittleEndian,
                                    uid.ExplicitVRBigEndian],
                         ids=lambda s: s.name)
def test_bare_data_set_without_preamble(tmp_path, caplog, syntax):
  raw = df.gradient(30, 20, 4095).astype(np.uint16)
  data = df.encode(df.dataset(raw, bits=12), syntax, preamble=False)
  assert data[128:132] != b'DICM'
  failed, errors = _denoise(tmp_path, 'bare.dcm', data, caplog)
  assert failed == 0, errors
  # The output is a complete DICOM file: preamble, meta, no force needed.
  result = pydicom.dcmread(tmp_path / 'out' / 'bare.dcm')
  np.testing.assert_array_equal(result.pixel_array, raw)


def test_dicom_named_png_and_png_named_dcm(tmp_path):
  """The contents decide the format, not a wrong extension."""
  raw = df.gradient(30, 20, 4095).astype(np.uint16)
  (tmp_path / 'dicom.png').write_bytes(
      df.encode(df.dataset(raw, bits=12), uid.ExplicitVRLittleEndian))
  assert radiograph_io.read_radiograph(
      str(tmp_path / 'dicom.png')).extension == '.dcm'
  Image.fromarray(raw.astype(np.uint16)).save(tmp_path / 'png.dcm', 'PNG')
  assert radiograph_io.read_radiograph(
      str(tmp_path / 'png.dcm')).extension == '.png'


def _ybr():
  rgb = np.zeros((8, 8, 3), np.uint8)
  ds = df.dataset(np.zeros((8, 8), np.uint8))
  ds.set_pixel_data(rgb, 'YBR_FULL', 8)
  return ds


def _modified(**elements):
  def make():
    ds = df.dataset(df.gradient(16, 12, 4095).astype(np.uint16), bits=12)
    for keyword, value in elements.items():
      if value is None:
        del ds[keyword]
      else:
        setattr(ds, keyword, value)
    return ds
  return make


@pytest.mark.parametrize('make,phrase', [
    (_ybr, 'is a colour image (YBR_FULL'),
    (_modified(PhotometricInterpretation='PALETTE COLOR'), 'colour image'),
    (_modified(Rows=None), 'no Rows/Columns'),
    (_modified(Rows=60000, Columns=60000), 'too large'),
    (_modified(BitsAllocated=None), '0 bits allocated'),
    (_modified(BitsAllocated=32), '32 bits allocated'),
    (_modified(BitsStored=20), 'contradict each other'),
    (_modified(Rows=32), 'truncated'),
    (_modified(NumberOfFrames=3), '3 frames'),
    (_modified(PixelRepresentation=2), 'Pixel Representation 2'),
    (_modified(RescaleSlope=0), 'RescaleSlope'),
    (_modified(PixelData=None), 'holds no image'),
], ids=['ybr', 'palette', 'no_rows', 'huge', 'no_bits', '32_bits',
        'bits_stored', 'short_data', 'frames', 'pixel_rep', 'slope',
        'no_pixels'])
def test_refusals_are_one_line(tmp_path, caplog, make, phrase):
  data = df.encode(make(), uid.ExplicitVRLittleEndian)
  failed, errors = _denoise(tmp_path, 'bad.dcm', data, caplog)
  assert failed == 1 and len(errors) == 1
  assert phrase in errors[0] and 'bad.dcm' in errors[0]
  assert '\n' not in errors[0] and ' at 0x' not in errors[0]
  assert not os.path.exists(tmp_path / 'out' / 'bad.dcm')


@pytest.mark.parametrize('name,phrase', [
    ('dicomdirtests/DICOMDIR', 'is a DICOMDIR'),
    ('rtplan.dcm', 'holds no image (no Pixel Data; it is RT Plan Storage)'),
    ('SC_rgb_jpeg.dcm', 'colour image'),
    ('rtdose.dcm', '15 frames'),
])
def test_pydicom_sample_objects_are_refused(name, phrase):
  with pytest.raises(image_io.ImageDecodeError,
                     match=re.escape(phrase)) as e:
    radiograph_io.read_radiograph(get_testdata_file(name))
  assert '\n' not in str(e.value)


def test_not_dicom_at_all(tmp_path):
  path = tmp_path / 'notes.dcm'
  path.write_text('patient list, not an image\n' * 20)
  with pytest.raises(image_io.ImageDecodeError,
                     match='not a DICOM file') as e:
    radiograph_io.read_radiograph(str(path))
  assert 'notes.dcm' in str(e.value)


def test_12bit_jpeg_extended_reads_or_names_the_package(tmp_path, caplog):
  """pydicom's sample: 12-bit JPEG Extended, which Pillow and GDCM refuse."""
  with open(get_testdata_file('JPGExtended.dcm'), 'rb') as f:
    data = f.read()
  failed, errors = _denoise(tmp_path, 'x.dcm', data, caplog)
  try:
    pydicom.dcmread(io.BytesIO(data)).pixel_array
  except Exception:  # pylint: disable=broad-except  # No 12-bit decoder.
    assert failed == 1 and len(errors) == 1
    assert 'pip install pylibjpeg pylibjpeg-libjpeg' in errors[0]
  else:
    assert failed == 0, errors


def test_missing_decoder_names_the_package(tmp_path, caplog, monkeypatch):
  class Unavailable:
    is_available = False
    missing_dependencies = [
        'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1',
        'gdcm - requires gdcm>=3.0.10']

  ds = df.dataset(df.gradient(16, 16, 255).astype(np.uint8))
  data = df.encode(ds, uid.JPEGBaseline8Bit)
  monkeypatch.setattr(pydicom_pixels, 'get_decoder', lambda _: Unavailable())
  failed, errors = _denoise(tmp_path, 'x.dcm', data, caplog)
  assert failed == 1
  assert errors == [
      f"DICOM file {str(tmp_path / 'in' / 'x.dcm')!r} is compressed as JPEG "
      'Baseline (Process 1) and no decoder for it is installed; pip install '
      'pylibjpeg pylibjpeg-libjpeg, or pip install python-gdcm, or convert '
      'it to uncompressed DICOM']
