"""Folders of synthetic radiographs for the whole-command benchmarks.

Smooth anatomy-like ramps with Gaussian noise, never a real patient's
image: half 16-bit PNG, half 12-bit DICOM, so that both readers and
writers are timed. `compare` checks two output folders.
"""

import os
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from xdn.io import images as image_io

SIZES = ((512, 512), (1024, 1024), (1536, 1536), (2048, 2048),
         (2048, 1536), (1024, 768), (1536, 2048), (768, 512))


def make(folder: str, count: int, seed: int = 0,
         sizes: Sequence[Tuple[int, int]] = SIZES) -> int:
  """`count` radiographs in `folder`, cycling through `sizes` ([H, W]);
  even ones 16-bit PNG, odd ones 12-bit DICOM. Returns the pixel count."""
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  import pydicom  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  total = 0
  for i in range(count):
    h, w = sizes[i % len(sizes)]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    clean = 0.2 + 0.5 * np.exp(-(((yy - h / 2) / (0.4 * h))**2 +
                                 ((xx - w / 2) / (0.3 * w))**2))
    noisy = np.clip(clean + rng.normal(0, 0.03, (h, w)), 0, 1)
    total += h * w
    if i % 2 == 0:
      png = np.round(noisy * 65535).astype(np.uint16)
      with open(os.path.join(folder, f'img{i:03d}.png'), 'wb') as f:
        f.write(image_io.encode_png(png, compress_level=1))
      continue
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid.generate_uid(entropy_srcs=['bench', str(i)])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SeriesInstanceUID = uid.generate_uid(entropy_srcs=['bench'])
    ds.StudyInstanceUID = uid.generate_uid(entropy_srcs=['bench study'])
    ds.Modality = 'DX'
    ds.PatientName = 'Synthetic^Bench'
    ds.set_pixel_data(np.round(noisy * 4095).astype(np.uint16),
                      'MONOCHROME2', 12, generate_instance_uid=False)
    ds.save_as(os.path.join(folder, f'img{i:03d}.dcm'),
               enforce_file_format=True)
  return total


def compare(folder: str, reference: str) -> Dict[str, Any]:
  """Identical files, or the largest pixel difference in [0, 1] units."""
  from xdn.io import radiographs as radiograph_io  # pylint: disable=g-import-not-at-top
  identical, worst, names = 0, 0.0, sorted(
      n for n in os.listdir(reference) if n.endswith(('.png', '.dcm')))
  for name in names:
    a, b = os.path.join(folder, name), os.path.join(reference, name)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
      if fa.read() == fb.read():
        identical += 1
        continue
    worst = max(worst, float(np.abs(
        radiograph_io.read_radiograph(a).pixels -
        radiograph_io.read_radiograph(b).pixels).max()))
  return {'files': len(names), 'identical': identical,
          'max_pixel_difference': worst}
