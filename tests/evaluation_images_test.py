"""Test images of a folder, and the pixel size its DICOM files state (the
NPWE observer's viewing geometry)."""

import numpy as np
from pydicom import uid

from tests import dicom_fixtures
from xdn.evaluation import images
from xdn.evaluation import tasks
from xdn.io import images as image_io


def _dicom(path, spacing=None):
  pixels = dicom_fixtures.gradient(64, 48, 4095).astype(np.uint16)
  ds = dicom_fixtures.dataset(pixels)
  if spacing is not None:
    ds.PixelSpacing = [spacing, spacing]
  path.write_bytes(dicom_fixtures.encode(ds, uid.ExplicitVRLittleEndian))


def test_the_folders_dicom_pixel_spacing_sets_the_geometry(tmp_path):
  image = (np.arange(48 * 40).reshape(48, 40) % 200).astype(np.uint8)
  (tmp_path / 'a.png').write_bytes(image_io.encode_png(image))
  assert images.folder_pixel_mm(str(tmp_path)) is None  # PNG: unknown.
  _dicom(tmp_path / 'b.dcm', 0.2)
  _dicom(tmp_path / 'c.dcm', 0.2)
  _dicom(tmp_path / 'd.dcm')  # States none: left out.
  assert images.folder_pixel_mm(str(tmp_path)) == 0.2
  geometry = tasks.LesionOptions(pixel_mm=0.2).geometry
  # 0.2 mm pixels read from 500 mm: 4 cycles/degree is 0.092 cycles/px.
  assert abs(geometry.peak_cycles_per_pixel - 0.0917) < 1e-3
  assert tasks.LesionOptions().geometry.peak_cycles_per_pixel == 0.2
