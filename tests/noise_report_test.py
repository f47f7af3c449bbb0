"""The noise report: on known synthetic noise, and on a real chest PA."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn import errors
from xdn.io import radiographs as radiograph_io
from xdn.noise import physics as noise_physics
from xdn.noise import report as noise_report


def _flat_noisy(sigma, rho, size=512, seed=0):
  y, x = np.mgrid[0:size, 0:size] / size
  clean = 0.3 + 0.4 * x + 0.1 * y**2  # Smooth: the detrending removes it.
  noisy = noise_physics.add_correlated_gaussian_noise(
      jax.random.key(seed), jnp.asarray(clean, jnp.float32)[None, ..., None],
      sigma, rho)
  return np.asarray(noisy)[0, ..., 0]


@pytest.mark.parametrize('rho', [0.0, 0.5])
def test_report_measures_known_noise(rho):
  result = noise_report.report(_flat_noisy(20.0, rho))
  flat = result['flat_regions']
  assert flat['std'] == pytest.approx(20.0, rel=0.05)
  assert np.mean([flat['rho_y'], flat['rho_x']]) == pytest.approx(rho,
                                                                  abs=0.03)
  assert result['estimate']['sigma_at_median'] == pytest.approx(20.0,
                                                                rel=0.05)
  # The NPS integrates to the variance, and has the kernel's shape: flat
  # for white noise, falling for correlated.
  nps = result['nps']
  assert nps['variance_from_nps'] == pytest.approx(flat['std']**2, rel=0.02)
  power = np.array(nps['nps'])
  ratio = power[-4:].mean() / power[2:6].mean()
  assert (0.7 < ratio < 1.4) if rho == 0 else ratio < 0.2


def test_report_on_the_real_chest_pa(tmp_path):
  data = pytest.importorskip('pydicom.data')
  path = data.get_testdata_file('RG1_UNCR.dcm')
  if path is None:
    pytest.skip('pydicom-data is not installed')
  result = noise_report.write(path, str(tmp_path))
  saved = json.loads((tmp_path / 'RG1_UNCR_noise.json').read_text())
  assert saved['file'] == 'RG1_UNCR.dcm'
  assert (tmp_path / 'RG1_UNCR_noise.png').stat().st_size > 10000
  # Measured: neighbour correlation ~0.45-0.5, std ~1.3 (0-255 scale).
  flat = result['flat_regions']
  assert 0.3 < np.mean([flat['rho_y'], flat['rho_x']]) < 0.7
  assert 0.5 < flat['std'] < 3.0
  assert len(result['std_by_intensity']['intensity']) >= 8


def test_too_small_or_saturated_image_is_refused():
  with pytest.raises(errors.UserError, match='region'):
    noise_report.report(np.ones((128, 128), np.float32))


def test_pixel_spacing_gives_frequencies_per_mm(tmp_path):
  image = _flat_noisy(10.0, 0.0, size=256)
  result = noise_report.report(image, pixel_spacing_mm=0.2)
  nps = result['nps']
  assert nps['pixel_spacing_mm'] == 0.2
  np.testing.assert_allclose(nps['frequency_cycles_per_mm'],
                             np.array(nps['frequency_cycles_per_pixel']) / 0.2)
  assert 'frequency_cycles_per_mm' not in noise_report.report(image)['nps']
  # Read from the file's header (xdn.io): DICOM only, a stated 0 is none.
  pydicom = pytest.importorskip('pydicom')
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  png = tmp_path / 'f.png'
  png.write_bytes(b'not read')
  assert radiograph_io.pixel_spacing_mm(str(png)) is None
  cases = (('PixelSpacing', [0.15, 0.15], 0.15),
           ('ImagerPixelSpacing', [0.2, 0.2], 0.2),
           ('PixelSpacing', [0, 0], None))
  for i, (keyword, value, expected) in enumerate(cases):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    setattr(ds, keyword, value)
    path = tmp_path / f'{i}.dcm'
    ds.save_as(path, enforce_file_format=True)
    assert radiograph_io.pixel_spacing_mm(str(path)) == expected


def test_command_line_writes_the_report(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.clip(_flat_noisy(15.0, 0.4, size=256), 0, 1)
  Image.fromarray((image * 65535).astype(np.uint16)).save(tmp_path / 'f.png')
  result = subprocess.run(
      [sys.executable, '-m', 'xdn.cli.noise', str(tmp_path / 'f.png'),
       f'--output={tmp_path / "out"}'], capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'flat regions' in result.stdout
  assert (tmp_path / 'out' / 'f_noise.json').exists()
  assert (tmp_path / 'out' / 'f_noise.png').exists()


def _blur(image, sigma):
  """Exact Gaussian low-pass by FFT (periodic)."""
  fy = np.fft.fftfreq(image.shape[0])[:, None]
  fx = np.fft.fftfreq(image.shape[1])[None, :]
  transfer = np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))
  return np.real(np.fft.ifft2(np.fft.fft2(image) * transfer))


def test_after_side_of_known_processing():
  noisy = _flat_noisy(20.0, 0.0)
  clean = noisy - (noisy - _blur(noisy, 30.0))  # Its smooth background.
  # Halving the noise keeps its texture; a blur moves it to low frequency.
  halved = noise_report.after_report(noisy, clean + 0.5 * (noisy - clean))
  assert halved['std_ratio'] == pytest.approx(0.5, rel=0.05)
  assert abs(halved['nps_mean_frequency_shift']) < 0.05
  assert halved['nps_shape_rmsd'] < 0.05
  blurred = noise_report.after_report(noisy, _blur(noisy, 1.5))
  assert blurred['std_ratio'] < 0.3
  assert blurred['nps_mean_frequency_shift'] < -0.4
  assert blurred['nps_shape_rmsd'] > 0.3
  same = noise_report.after_report(noisy, noisy)
  assert same['std_ratio'] == pytest.approx(1.0)
  assert same['nps_shape_rmsd'] == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ValueError, match='denoised image is'):
    noise_report.after_report(noisy, noisy[:100])


def test_command_line_after_side(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.clip(_flat_noisy(15.0, 0.0, size=256), 0, 1)
  after = np.clip(_blur(image, 1.0), 0, 1)
  for name, pixels in (('f.png', image), ('g.png', after)):
    Image.fromarray((pixels * 65535).astype(np.uint16)).save(tmp_path / name)
  run = lambda *args: subprocess.run(
      [sys.executable, '-m', 'xdn.cli.noise', str(tmp_path / 'f.png'),
       f'--out={tmp_path / "out"}', *args], capture_output=True, text=True,
      timeout=300)
  result = run(f'--after={tmp_path / "g.png"}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'denoised: std' in result.stdout and 'NPS mean frequency' in \
      result.stdout
  saved = json.loads((tmp_path / 'out' / 'f_noise.json').read_text())
  assert saved['after_file'] == 'g.png'
  assert saved['after']['nps_mean_frequency_shift'] < -0.2
  bad = run(f'--after={tmp_path / "g.png"},{tmp_path / "g.png"}')
  assert bad.returncode != 0 and 'one per input' in bad.stderr
