"""NPS and TTF against noise and blurs whose spectra are known exactly."""

import numpy as np
import pytest

from xdn.metrics import image_quality

SIGMA = 0.1  # std of the white noise
BLUR = 1.5  # px, std of the Gaussian that colours the noise
COARSE = 3.0  # px, a blur whose NPS falls clearly between the first bins


def _gaussian_filter(image, s):
  """Exact periodic Gaussian blur: the FFT times exp(-2 pi^2 s^2 f^2)."""
  fy = np.fft.fftfreq(image.shape[0])[:, None]
  fx = np.fft.fftfreq(image.shape[1])[None, :]
  transfer = np.exp(-2 * np.pi**2 * s**2 * (fx**2 + fy**2))
  return np.real(np.fft.ifft2(np.fft.fft2(image) * transfer))


@pytest.fixture(scope='module')
def white_nps():
  rng = np.random.default_rng(0)
  images = [rng.normal(0, SIGMA, (256, 256)) for _ in range(8)]
  return image_quality.nps_2d(images, roi=64)


def _blurred_nps(s, seed):
  # ROIs of 256: bins 8 frequency steps wide, so the plane fit's loss next
  # to DC (see nps_2d) stays at a few % even for low-pass noise.
  rng = np.random.default_rng(seed)
  images = [_gaussian_filter(rng.normal(0, SIGMA, (512, 512)), s)
            for _ in range(8)]
  return image_quality.nps_2d(images, roi=256)


@pytest.fixture(scope='module')
def blurred_nps():
  return _blurred_nps(BLUR, seed=1)


def test_noise_from_pair_removes_image_keeps_variance():
  rng = np.random.default_rng(2)
  clean = np.linspace(0, 5, 128 * 128).reshape(128, 128)
  bias = 0.3 * np.sin(clean)
  out1 = clean + bias + rng.normal(0, SIGMA, clean.shape)
  out2 = clean + bias + rng.normal(0, SIGMA, clean.shape)
  noise = image_quality.noise_from_pair(out1, out2)
  assert abs(np.mean(noise)) < 0.01
  assert np.std(noise) == pytest.approx(SIGMA, rel=0.03)


def test_white_nps_integrates_to_variance(white_nps):
  assert white_nps.shape == (64, 64)
  assert np.mean(white_nps) == pytest.approx(SIGMA**2, rel=0.05)


def test_nps_ignores_a_ramp():
  # A shading ramp of 25 sigma across each ROI: the plane fit must remove
  # it, or it lands as power next to DC.
  rng = np.random.default_rng(6)
  y, x = np.mgrid[0:256, 0:256]
  images = [rng.normal(0, SIGMA, (256, 256)) + 0.04 * x - 0.02 * y
            for _ in range(2)]
  nps = image_quality.nps_2d(images, roi=64)
  assert np.mean(nps) == pytest.approx(SIGMA**2, rel=0.05)


def test_white_radial_nps_is_flat(white_nps):
  f, values = image_quality.radial_nps(white_nps)
  assert f.shape == values.shape == (32,)
  assert f[0] == pytest.approx(0.5 / 64)
  assert f[-1] == pytest.approx(0.5 - 0.5 / 64)
  # Bins one frequency step wide: the first holds only DC, so it is empty.
  assert np.isnan(values[0]) and np.isfinite(values[1:]).all()
  assert np.std(values[1:]) / np.mean(values[1:]) < 0.1
  assert np.mean(values[1:]) == pytest.approx(SIGMA**2, rel=0.05)


def test_white_mean_frequency_is_analytic(white_nps):
  g = np.fft.fftfreq(1024)
  analytic = np.mean(np.hypot(g[:, None], g[None, :]))  # about 0.3826
  figures = image_quality.nps_frequencies(white_nps)
  assert figures['mean_frequency'] == pytest.approx(analytic, rel=0.03)
  assert figures['variance'] == pytest.approx(SIGMA**2, rel=0.05)
  assert figures['std'] == pytest.approx(SIGMA, rel=0.03)


def test_blurred_nps_is_squared_transfer(blurred_nps):
  f, values = image_quality.radial_nps(blurred_nps)
  expected = np.exp(-4 * np.pi**2 * BLUR**2 * f**2)
  where = expected > 0.05
  assert where.sum() >= 10
  # 15 %: the first bin reads ~6 % low (the plane fit) and has ~3 % noise.
  np.testing.assert_allclose(values[where] / SIGMA**2, expected[where],
                             rtol=0.15)


def test_blurred_nps_texture_is_coarser(white_nps, blurred_nps):
  blurred = image_quality.nps_frequencies(blurred_nps)
  white = image_quality.nps_frequencies(white_nps)
  assert blurred['mean_frequency'] < 0.5 * white['mean_frequency']
  # Variance of white noise through the blur: sigma^2 / (4 pi s^2).
  assert blurred['variance'] == pytest.approx(
      SIGMA**2 / (4 * np.pi * BLUR**2), rel=0.05)


def test_low_pass_nps_peaks_in_the_first_bin():
  # At 1.5 px the NPS drops only ~4 % from the first bin to the second,
  # less than the first bin's plane-fit loss; at 3 px it drops ~17 %.
  coarse = _blurred_nps(COARSE, seed=5)
  f, _ = image_quality.radial_nps(coarse)
  assert image_quality.nps_frequencies(coarse)['peak_frequency'] == (
      pytest.approx(f[0]))


def test_shape_rmsd_ignores_magnitude_sees_texture(white_nps, blurred_nps):
  _, white = image_quality.radial_nps(white_nps)
  _, blurred = image_quality.radial_nps(blurred_nps)
  assert image_quality.nps_shape_rmsd(blurred, 7 * blurred) == pytest.approx(
      0.0, abs=1e-12)
  assert image_quality.nps_shape_rmsd(white, blurred) > 0.3
  with pytest.raises(ValueError):
    image_quality.nps_shape_rmsd(white, blurred[:-1])


def test_mask_keeps_only_rois_inside():
  rng = np.random.default_rng(3)
  image = rng.normal(0, SIGMA, (256, 256))
  image[:, 128:] *= 10  # a loud half the mask leaves out
  mask = np.zeros(image.shape, bool)
  mask[:, :128] = True
  nps = image_quality.nps_2d([image], roi=32, mask=[mask])
  assert np.mean(nps) == pytest.approx(SIGMA**2, rel=0.1)


def test_no_roi_raises():
  image = np.zeros((128, 128))
  # Every 64x64 tile has a hole in it.
  mask = np.ones(image.shape, bool)
  mask[32::64, 32::64] = False
  with pytest.raises(ValueError, match='no 64x64 ROI'):
    image_quality.nps_2d([image], roi=64, mask=[mask])
  with pytest.raises(ValueError, match='no 64x64 ROI'):
    image_quality.nps_2d([np.zeros((32, 200))], roi=64)


def test_disc_area():
  disc = image_quality.disc_image((64, 64), (31.3, 30.8), 10.0, contrast=0.2)
  assert disc.dtype == np.float64 and disc.shape == (64, 64)
  assert disc.sum() == pytest.approx(np.pi * 10.0**2 * 0.2, rel=0.01)
  assert disc.max() == pytest.approx(0.2) and disc.min() == 0.0


def test_edge_spread_steps_at_the_radius():
  disc = image_quality.disc_image((64, 64), (32.4, 31.7), 10.0)
  r, esf = image_quality.edge_spread(disc, (32.4, 31.7), 10.0)
  assert len(r) == len(esf) == 200
  assert np.all(esf[r < 9] == 1.0) and np.all(esf[r > 11] == 0.0)
  # Half height at the edge, within a sub-pixel.
  assert np.interp(-0.5, -esf, r) == pytest.approx(10.0, abs=0.2)


def _discs(count=6, radius=12.0, size=128):
  rng = np.random.default_rng(4)
  centres = [(size / 2 + rng.uniform(-0.5, 0.5),
              size / 2 + rng.uniform(-0.5, 0.5)) for _ in range(count)]
  discs = [image_quality.disc_image((size, size), c, radius) for c in centres]
  return discs, centres


def test_ttf_of_identity_is_one():
  discs, centres = _discs()
  result = image_quality.ttf(discs, discs, centres, 12.0)
  f, curve = result['frequency'], result['ttf']
  assert f[0] == 0.0 and f[-1] <= 0.5 and f[-1] > 0.49
  assert np.isfinite(curve).sum() > len(curve) // 2
  np.testing.assert_allclose(curve[np.isfinite(curve)], 1.0, atol=1e-6)
  assert float(result['f50']) == 0.5 and float(result['f10']) == 0.5


def test_ttf_of_gaussian_blur():
  s = 1.2
  discs, centres = _discs()
  measured = [_gaussian_filter(d, s) for d in discs]
  result = image_quality.ttf(measured, discs, centres, 12.0)
  f, curve = result['frequency'], result['ttf']
  expected = np.exp(-2 * np.pi**2 * s**2 * f**2)
  where = expected > 0.1
  assert np.isfinite(curve[where]).all()
  np.testing.assert_allclose(curve[where], expected[where], atol=0.05)
  assert float(result['f50']) == pytest.approx(
      np.sqrt(np.log(2) / (2 * np.pi**2 * s**2)), rel=0.05)
  assert float(result['f10']) == pytest.approx(
      np.sqrt(np.log(10) / (2 * np.pi**2 * s**2)), rel=0.05)
