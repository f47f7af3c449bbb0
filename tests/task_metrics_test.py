"""Task-based metrics against cases with a known answer, and lesions."""

import jax
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from xdn.evaluation import lesions as lesion_eval
from xdn.metrics import lesions
from xdn.metrics import observers as task_metrics


def _sites(n, spacing=40, size=320):
  grid = [(y, x) for y in range(spacing, size - spacing, spacing)
          for x in range(spacing, size - spacing, spacing)]
  return grid[:n]


def _setup(size_px=3.0, contrast=0.05, count=25):
  shape = (320, 320)
  sites = _sites(count)
  lesion = lesions.lesion_image(shape, sites, size_px, contrast)
  background = np.full(shape, 0.5, np.float32)
  return background, lesion, sites


def test_identity_keeps_every_lesion():
  background, lesion, sites = _setup()
  noise = np.random.default_rng(0).normal(0, 0.05, background.shape)
  parts = [task_metrics.lesion_figures(background, lesion,
                                       background + lesion + noise,
                                       background + noise, sites, 3.0)]
  summary = task_metrics.summarise(parts, 3.0)
  assert summary['transfer_mean'] == pytest.approx(1.0, abs=1e-6)
  assert summary['transfer_p10'] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize('blur', [1.0, 2.0, 4.0])
def test_blur_has_its_analytic_transfer(blur):
  size = 3.0
  background, lesion, sites = _setup(size)
  blurred = ndimage.gaussian_filter(lesion, blur)
  parts = [task_metrics.lesion_figures(background, lesion,
                                       background + blurred, background,
                                       sites, size)]
  # <t, G_b * t> / <t, t> for Gaussian t of std s: 2 s^2 / (2 s^2 + b^2).
  expected = 2 * size**2 / (2 * size**2 + blur**2)
  transfer = task_metrics.summarise(parts, size)['transfer_mean']
  assert transfer == pytest.approx(expected, rel=0.02)


def test_white_noise_npw_d_prime_is_analytic():
  # d' = c sqrt(sum p^2) / sigma for template = signal profile p.
  size, contrast, sigma = 3.0, 0.04, 0.05
  background, lesion, sites = _setup(size, contrast, count=36)
  rng = np.random.default_rng(1)
  parts = []
  for _ in range(8):  # 288 sites.
    n = rng.normal(0, sigma, background.shape)
    m = rng.normal(0, sigma, background.shape)
    parts.append(task_metrics.lesion_figures(
        background, lesion, background + lesion + n, background + m, sites,
        size))
  summary = task_metrics.summarise(parts, size)
  profile = lesions.lesion_image((25, 25), [(12, 12)], size, 1.0)
  expected = contrast * np.sqrt(np.sum(profile**2)) / sigma
  # Sampling error of d' over 288 + 288 responses: ~6 %.
  assert summary['npw_d_prime'] == pytest.approx(expected, rel=0.15)
  # The CHO, with the signal in its channels' span, is near-ideal too.
  assert summary['cho_d_prime'] == pytest.approx(expected, rel=0.2)


def test_a_denoiser_that_erases_lesions_loses_detectability():
  size = 3.0
  background, lesion, sites = _setup(size, 0.04, count=36)
  rng = np.random.default_rng(2)
  keep, erase = [], []
  for _ in range(6):
    n = rng.normal(0, 0.05, background.shape)
    keep.append(task_metrics.lesion_figures(background, lesion,
                                            background + lesion + n,
                                            background + n, sites, size))
    # Erasing half of each lesion and blurring the noise a little.
    smooth = ndimage.gaussian_filter(n, 0.7)
    erase.append(task_metrics.lesion_figures(background, lesion,
                                             background + 0.5 * lesion +
                                             smooth, background + smooth,
                                             sites, size))
  assert task_metrics.summarise(erase, size)['transfer_mean'] == (
      pytest.approx(0.5, abs=1e-6))


def test_laguerre_gauss_channels_are_orthonormal():
  channels = task_metrics.laguerre_gauss_channels(65, 9.0, 5)
  gram = channels.reshape(5, -1) @ channels.reshape(5, -1).T
  np.testing.assert_allclose(gram, np.eye(5), atol=0.02)


def test_sites_are_inside_the_body_apart_and_off_the_border():
  image = np.zeros((200, 200), np.float32)
  image[30:170, 40:160] = 0.6
  mask = lesions.body_mask(image, margin=20)
  sites = lesions.place_sites(np.random.default_rng(0), mask, 20, 15)
  assert len(sites) >= 10
  for i, (y, x) in enumerate(sites):
    assert image[y, x] > 0 and 20 <= y < 180 and 20 <= x < 180
    for yy, xx in sites[i + 1:]:
      assert (y - yy)**2 + (x - xx)**2 >= 15**2


def test_lesion_profiles():
  flat = lesions.lesion_image((41, 41), [(20, 20)], 4.0, 0.1,
                              profile='flat')
  gauss = lesions.lesion_image((41, 41), [(20, 20)], 4.0, 0.1)
  assert flat.max() == pytest.approx(0.1) and gauss.max() == pytest.approx(0.1)
  assert (flat > 0.099).sum() > 5 * (gauss > 0.099).sum()  # A flat top.
  long = lesions.lesion_image((41, 41), [(20, 20)], 3.0, 1.0, aspect=2.0)
  assert (long[20] > 0.5).sum() > 1.8 * (long[:, 20] > 0.5).sum()
  with pytest.raises(ValueError, match='profile'):
    lesions.lesion_image((9, 9), [(4, 4)], 1.0, 1.0, profile='square')


def test_training_insertion_adds_faint_lesions_to_a_fraction():
  config = ml_collections.ConfigDict(dict(
      rate=0.5, min_contrast=0.01, max_contrast=0.05, min_size=1.0,
      max_size=4.0, positive_fraction=1.0))
  lesions.check_config(config)
  images = np.full((64, 32, 32, 1), 0.5, np.float32)
  out = np.asarray(lesions.insert_random_lesions(jax.random.key(0), images,
                                                 config))
  peak = (out - images).reshape(64, -1).max(1)
  changed = peak > 1e-4
  assert 16 < changed.sum() < 48
  assert peak[changed].max() <= 0.05 + 1e-6 and peak[changed].min() > 0.005


def test_contrast_is_chosen_for_the_target_d_prime():
  rng = np.random.default_rng(3)
  profile = lesions.lesion_image((25, 25), [(12, 12)], 3.0, 1.0)
  noise_rois = rng.normal(0, 0.1, (400, 25, 25))
  c = lesion_eval.contrast_for_d_prime(noise_rois, profile, 2.0)
  expected = 2.0 * 0.1 / np.sqrt(np.sum(profile**2))
  assert c == pytest.approx(expected, rel=0.1)


def _white_rois(rng, count, size, sigma, signal):
  """Background-subtracted ROIs with / without `signal`, white noise."""
  present = signal + rng.normal(0, sigma, (count, size, size))
  absent = rng.normal(0, sigma, (count, size, size))
  return present, absent


def test_eye_filter_peaks_where_the_geometry_says():
  geometry = task_metrics.EyeGeometry(pixel_mm=0.2, viewing_distance_mm=500)
  # 1 degree at 500 mm is 8.73 mm, 43.6 pixels of 0.2 mm: 4 cycles/degree
  # is 0.0917 cycles/px.
  assert geometry.peak_cycles_per_pixel == pytest.approx(
      4 / (500 * np.tan(np.radians(1)) / 0.2))
  size = 256
  eye = task_metrics.eye_filter(size, geometry)
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size),
                            indexing='ij'))
  assert eye[0, 0] == 0 and eye.max() <= 1 + 1e-9
  assert f.flat[np.argmax(eye)] == pytest.approx(
      geometry.peak_cycles_per_pixel, abs=1.5 / size)
  unknown = task_metrics.EyeGeometry()
  assert unknown.peak_cycles_per_pixel == 0.2
  assert 'unknown' in unknown.describe() and '0.2 mm' in geometry.describe()


def test_npwe_d_prime_matches_its_analytic_value_in_white_noise():
  rng = np.random.default_rng(0)
  size, sigma, amplitude = 17, 1.0, 0.6
  y, x = np.mgrid[:size, :size] - size // 2
  template = np.exp(-(x**2 + y**2) / (2 * 2.0**2))
  signal = amplitude * template
  present, absent = _white_rois(rng, 6000, size, sigma, signal)
  # NPW in white noise: d' = a ||t|| / sigma.
  assert task_metrics.npw_d_prime(present, absent, template) == pytest.approx(
      amplitude * np.linalg.norm(template) / sigma, rel=0.05)
  # NPWE: any linear template w gives d' = <w, s> / (sigma ||w||), below
  # NPW's (the matched filter is ideal in white noise).
  w = task_metrics.npwe_template(template)
  analytic = np.sum(w * signal) / (sigma * np.linalg.norm(w))
  measured = task_metrics.npwe_d_prime(present, absent, template)
  assert measured == pytest.approx(analytic, rel=0.05)
  assert analytic < amplitude * np.linalg.norm(template) / sigma


def test_cho_internal_noise_divides_d_prime_squared_by_one_plus_alpha():
  rng = np.random.default_rng(1)
  size, sigma = 21, 1.0
  channels = task_metrics.laguerre_gauss_channels(size, 6.0, count=3)
  signal = 0.8 * channels[0] / np.abs(channels[0]).max()
  present, absent = _white_rois(rng, 6000, size, sigma, signal)
  plain = task_metrics.cho_d_prime(present, absent, channels)
  human = task_metrics.cho_d_prime(present, absent, channels,
                                   internal_noise=1.0)
  # White noise, near-orthogonal channels: S is nearly diagonal, so
  # (S + S_diag)^-1 = S^-1 / 2.
  assert human / plain == pytest.approx(1 / np.sqrt(2), rel=0.03)
  assert plain > 1.0  # The signal is detectable at all.
