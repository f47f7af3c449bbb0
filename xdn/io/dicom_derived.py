"""What makes a denoised DICOM file a derived image: one function, `derive`.

Both `xdn-denoise` and the Beam pipeline (`xdn-beam`) write DICOM through
`radiograph_io`'s encoder, which calls `derive` on the copy of the source
data set that holds the new pixels. It sets (DICOM PS3.3 C.7.6.1, C.7.3.1,
C.12.1):

  SOPInstanceUID, MediaStorageSOPInstanceUID   new
  SeriesInstanceUID, SeriesNumber, SeriesDescription
                     new, and the same for every output of one input series
  StudyInstanceUID, patient and study modules  kept as they are
  ImageType          DERIVED\\SECONDARY (later values kept)
  DerivationDescription
                     names xdn, its version, the model and the noise it was
                     told (the `description`), and the source's syntax
  SourceImageSequence          the original SOP Class / Instance UID
  ContributingEquipmentSequence  an item for xdn (Modifying Equipment)
  Smallest/LargestImagePixelValue  those of the new pixels (if present)

The new UIDs are derived (`pydicom.uid.generate_uid(entropy_srcs=...)`,
a hash under pydicom's root) from the source's UIDs and `description`, not
drawn at random: workers of a pipeline that never talk to each other give
the outputs of one series the same series UID, and a rerun or a retried
bundle writes byte-identical files instead of a second copy of an image
under another UID. For the same reason no creation time is written.

Imports only pydicom (when called).
"""

from typing import Any

import numpy as np

import xdn

# Derived series are numbered after the source's, as scanners number their
# reconstructions and post-processed series (source 3 -> 1003).
SERIES_NUMBER_OFFSET = 1000
_MAX_INTEGER_STRING = 2**31 - 1  # IS values are 32-bit signed.


def derived_uid(*sources: str) -> str:
  """A UID determined by `sources` (pydicom's root + their SHA-512)."""
  from pydicom import uid  # pylint: disable=g-import-not-at-top  # Slow.
  return str(uid.generate_uid(entropy_srcs=[str(s) for s in sources]))


def derive(source: Any, out: Any, stored: np.ndarray, description: str,
           derivation: str) -> None:
  """Marks `out` (a copy of `source` with new pixels) as derived, in place.

  `description`: the run's words for what was done ('denoised by xdn
  0.1.0, model ..., noise told: ...'); it seeds the new UIDs, so outputs
  of one run share one series per source series. `derivation`: the
  Derivation Description (the description and the source's syntax).
  `stored`: the new stored pixel values.
  """
  import pydicom  # pylint: disable=g-import-not-at-top
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  source_sop = str(source.get('SOPInstanceUID', '') or '')
  source_series = str(source.get('SeriesInstanceUID', '') or '')
  # A source without an instance UID (a damaged bare data set) still gets a
  # stable one: its series and pixels decide it.
  out.SOPInstanceUID = derived_uid(
      'sop', source_sop or source_series or stored.tobytes(), description)
  out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
  if 'SOPClassUID' not in out:
    out.SOPClassUID = uid.SecondaryCaptureImageStorage
  out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID

  out.SeriesInstanceUID = derived_uid('series', source_series, description)
  number = source.get('SeriesNumber', None)
  try:
    number = int(number) + SERIES_NUMBER_OFFSET
  except (TypeError, ValueError):
    number = SERIES_NUMBER_OFFSET
  out.SeriesNumber = min(number, _MAX_INTEGER_STRING)
  original = str(source.get('SeriesDescription', '') or '').strip()
  out.SeriesDescription = (f'{original} (denoised)' if original else
                           'denoised by xdn')[:64]

  image_type = [str(v) for v in (source.get('ImageType', None) or [])]
  out.ImageType = ['DERIVED', 'SECONDARY'] + image_type[2:]
  out.DerivationDescription = derivation[:1024]

  reference = pydicom.Dataset()
  reference.ReferencedSOPClassUID = str(
      source.get('SOPClassUID', '') or out.SOPClassUID)
  reference.ReferencedSOPInstanceUID = source_sop or out.SOPInstanceUID
  reference.PurposeOfReferenceCodeSequence = [_code(
      '121322', 'Source image for image processing operation')]
  out.SourceImageSequence = [reference]

  equipment = pydicom.Dataset()
  equipment.Manufacturer = 'xdn'
  equipment.ManufacturerModelName = 'xdn denoiser'
  equipment.SoftwareVersions = xdn.__version__
  equipment.ContributionDescription = description[:1024]
  equipment.PurposeOfReferenceCodeSequence = [_code('109103',
                                                    'Modifying Equipment')]
  out.ContributingEquipmentSequence = (
      list(source.get('ContributingEquipmentSequence', None) or []) +
      [equipment])

  # Pixel description: set_pixel_data wrote Rows ... PixelRepresentation;
  # these optional ones would still describe the old pixels.
  vr = 'SS' if int(out.get('PixelRepresentation', 0) or 0) == 1 else 'US'
  for keyword, value in (('SmallestImagePixelValue', stored.min()),
                         ('LargestImagePixelValue', stored.max())):
    if keyword in out:
      # Its VR (US or SS) follows the pixel representation.
      out.add_new(pydicom.datadict.tag_for_keyword(keyword), vr, int(value))


def _code(value: str, meaning: str) -> Any:
  """A DICOM (DCM) code sequence item."""
  import pydicom  # pylint: disable=g-import-not-at-top
  item = pydicom.Dataset()
  item.CodeValue = value
  item.CodingSchemeDesignator = 'DCM'
  item.CodeMeaning = meaning
  return item
