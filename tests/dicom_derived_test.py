"""Denoised DICOM is a derived image (xdn.io.dicom_derived), on both paths.

Each attribute `derive` sets, that the patient and study stay, that one
source series gives one derived series, that reruns write the same bytes,
and that pydicom and GDCM (a DICOM viewer's reader) open the result.
"""

import io

import numpy as np
import pydicom
from pydicom import uid
import pytest

import xdn
from tests import dicom_fixtures as df
from xdn.inference import folder as denoise
from xdn.inference import outputs
from xdn.io import radiographs as radiograph_io
from xdn import models
from xdn.models.conditioning import Conditioning
from xdn.noise.estimation import known_noise

STUDY = uid.generate_uid()
DESCRIPTION = 'denoised by xdn test, model m step 1, noise told: x'


class NoiseMapDenoiser:
  """Inverts the image (so the pixels change); takes a noise level."""
  name, step = 'invert', 7
  capabilities = models.Capabilities(told=Conditioning(noise_map=True))
  strength_label = 'medium (s 0.65)'

  def __call__(self, images, noise_levels=None):
    del noise_levels
    return 1.0 - images


def _source(series: str, number: int = 3, seed: int = 0) -> pydicom.Dataset:
  ds = df.dataset(df.gradient(40, 56, 4095, seed).astype(np.uint16), bits=12)
  ds.SeriesInstanceUID = series
  ds.StudyInstanceUID = STUDY
  ds.PatientID = 'P123'
  ds.PatientBirthDate = '19700101'
  ds.StudyDate = '20240102'
  ds.AccessionNumber = 'A42'
  ds.SeriesNumber = number
  ds.SeriesDescription = 'Chest PA'
  ds.ImageType = ['ORIGINAL', 'PRIMARY', 'POST_PROCESSED']
  ds.SmallestImagePixelValue = 0
  ds.LargestImagePixelValue = 4095
  return ds


def _write(tmp_path, name: str, ds: pydicom.Dataset) -> str:
  path = tmp_path / name
  path.write_bytes(df.encode(ds, uid.ExplicitVRLittleEndian))
  return str(path)


def _derived(path: str, description: str = DESCRIPTION,
             change=lambda p: 1.0 - p) -> pydicom.Dataset:
  radiograph = radiograph_io.read_radiograph(path, description)
  data = radiograph.to_file(change(radiograph.pixels))
  return pydicom.dcmread(io.BytesIO(data))


@pytest.fixture
def pair(tmp_path):
  series = uid.generate_uid()
  source = _source(series)
  path = _write(tmp_path, 'a.dcm', source)
  return pydicom.dcmread(path), _derived(path), path


def test_new_instance_uid_in_data_set_and_file_meta(pair):
  source, out, _ = pair
  assert out.SOPInstanceUID != source.SOPInstanceUID
  assert uid.UID(out.SOPInstanceUID).is_valid
  assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
  assert out.SOPClassUID == source.SOPClassUID
  assert out.file_meta.MediaStorageSOPClassUID == out.SOPClassUID


def test_new_series_number_and_description(pair):
  source, out, _ = pair
  assert out.SeriesInstanceUID != source.SeriesInstanceUID
  assert uid.UID(out.SeriesInstanceUID).is_valid
  assert out.SeriesNumber == 1003
  assert out.SeriesDescription == 'Chest PA (denoised)'


def test_patient_and_study_kept(pair):
  source, out, _ = pair
  for keyword in ('StudyInstanceUID', 'PatientName', 'PatientID',
                  'PatientBirthDate', 'StudyDate', 'AccessionNumber',
                  'Modality'):
    assert out[keyword].value == source[keyword].value, keyword


def test_image_type_and_derivation_description(pair):
  _, out, _ = pair
  assert list(out.ImageType) == ['DERIVED', 'SECONDARY', 'POST_PROCESSED']
  assert out.DerivationDescription.startswith(DESCRIPTION)
  assert 'decoded from Explicit VR Little Endian' in out.DerivationDescription


def test_source_image_sequence_points_at_the_original(pair):
  source, out, _ = pair
  (item,) = out.SourceImageSequence
  assert item.ReferencedSOPClassUID == source.SOPClassUID
  assert item.ReferencedSOPInstanceUID == source.SOPInstanceUID
  assert item.PurposeOfReferenceCodeSequence[0].CodeValue == '121322'


def test_contributing_equipment_names_xdn(pair):
  _, out, _ = pair
  item = out.ContributingEquipmentSequence[-1]
  assert item.Manufacturer == 'xdn'
  assert item.SoftwareVersions == xdn.__version__
  assert item.ContributionDescription == DESCRIPTION
  assert item.PurposeOfReferenceCodeSequence[0].CodeMeaning == (
      'Modifying Equipment')


def test_pixel_description_matches_the_new_pixels(pair):
  source, out, _ = pair
  pixels = out.pixel_array
  assert (out.Rows, out.Columns) == pixels.shape == source.pixel_array.shape
  assert (out.BitsAllocated, out.BitsStored, out.HighBit) == (16, 12, 11)
  assert out.PixelRepresentation == 0 and out.SamplesPerPixel == 1
  assert out.PhotometricInterpretation == 'MONOCHROME2'
  # Inverted, so the range moved: the tags follow the new pixels.
  assert out.SmallestImagePixelValue == pixels.min()
  assert out.LargestImagePixelValue == pixels.max()
  assert out.SmallestImagePixelValue != source.pixel_array.min() or (
      out.LargestImagePixelValue != source.pixel_array.max())
  np.testing.assert_array_equal(pixels, 4095 - source.pixel_array)


def test_one_derived_series_per_source_series(tmp_path):
  series, other = uid.generate_uid(), uid.generate_uid()
  a = _derived(_write(tmp_path, 'a.dcm', _source(series, seed=1)))
  b = _derived(_write(tmp_path, 'b.dcm', _source(series, seed=2)))
  c = _derived(_write(tmp_path, 'c.dcm', _source(other, seed=3)))
  assert a.SeriesInstanceUID == b.SeriesInstanceUID  # Shared in a series.
  assert a.SOPInstanceUID != b.SOPInstanceUID
  assert c.SeriesInstanceUID not in (a.SeriesInstanceUID, series, other)
  # Another model or noise is another derived series.
  d = _derived(str(tmp_path / 'a.dcm'), DESCRIPTION + ' other')
  assert d.SeriesInstanceUID != a.SeriesInstanceUID
  assert d.SOPInstanceUID != a.SOPInstanceUID


def test_rerun_writes_the_same_bytes(tmp_path):
  path = _write(tmp_path, 'a.dcm', _source(uid.generate_uid()))
  first = radiograph_io.read_radiograph(path, DESCRIPTION)
  second = radiograph_io.read_radiograph(path, DESCRIPTION)
  assert first.to_file(first.pixels * 0.5) == second.to_file(
      second.pixels * 0.5)


def test_xdn_denoise_names_version_model_and_noise(tmp_path):
  path = _write(tmp_path, 'a.dcm', _source(uid.generate_uid()))
  level = known_noise('gaussian', 12.0, 0.0)
  assert denoise.denoise_files(NoiseMapDenoiser(), [path],
                               str(tmp_path / 'out'), noise_level=level) == 0
  out = pydicom.dcmread(tmp_path / 'out' / 'a.dcm')
  text = out.DerivationDescription
  assert f'xdn {xdn.__version__}' in text and 'model invert step 7' in text
  assert 'strength medium' in text
  assert f'noise told: {level.describe()}' in text
  assert text.startswith(outputs.describe(NoiseMapDenoiser(), level))
  assert 'estimated from each image' in outputs.describe(NoiseMapDenoiser())


def test_pydicom_and_gdcm_read_the_result(tmp_path, pair):
  gdcm = pytest.importorskip('gdcm')
  _, out, path = pair
  target = tmp_path / 'derived.dcm'
  radiograph = radiograph_io.read_radiograph(path, DESCRIPTION)
  target.write_bytes(radiograph.to_file(1.0 - radiograph.pixels))
  strict = pydicom.dcmread(target)  # No force: a complete DICOM file.
  assert strict.preamble is not None
  reader = gdcm.ImageReader()
  reader.SetFileName(str(target))
  assert reader.Read(), 'GDCM cannot read the derived file'
  image = reader.GetImage()
  assert [image.GetDimension(0), image.GetDimension(1)] == [out.Columns,
                                                            out.Rows]
  buffer = image.GetBuffer()
  # python-gdcm returns the bytes as a str (surrogate-escaped), as pydicom
  # reads it.
  pixels = np.frombuffer(buffer.encode('utf-8', 'surrogateescape')
                         if isinstance(buffer, str)
                         else buffer, '<u2').reshape(out.Rows, out.Columns)
  np.testing.assert_array_equal(pixels, out.pixel_array)
  # GDCM sees the same derived identity.
  file_reader = gdcm.Reader()
  file_reader.SetFileName(str(target))
  assert file_reader.Read()
  string_filter = gdcm.StringFilter()
  string_filter.SetFile(file_reader.GetFile())
  sop = string_filter.ToString(gdcm.Tag(0x0008, 0x0018)).strip('\x00 ')
  assert sop == out.SOPInstanceUID
