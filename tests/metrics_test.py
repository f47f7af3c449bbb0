"""xdn.metrics.similarity agree with scikit-image's reference implementations."""

import numpy as np
from skimage import metrics as skm

from xdn.metrics import similarity as metrics


def test_psnr_and_ssim_match_scikit_image():
  rng = np.random.default_rng(0)
  clean = rng.random((3, 48, 40, 1)).astype(np.float32)
  clean = np.cumsum(clean, axis=1) / 48  # Smooth-ish, like radiographs.
  noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(
      np.float32)
  psnr = np.asarray(metrics.psnr(noisy, clean))
  ssim = np.asarray(metrics.ssim(noisy, clean))
  for i in range(3):
    want_psnr = skm.peak_signal_noise_ratio(clean[i, ..., 0], noisy[i, ..., 0],
                                            data_range=1.0)
    # scikit-image's Gaussian-window SSIM is the one of Wang et al. (2004).
    want_ssim = skm.structural_similarity(
        clean[i, ..., 0], noisy[i, ..., 0], data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    np.testing.assert_allclose(psnr[i], want_psnr, rtol=1e-4)
    np.testing.assert_allclose(ssim[i], want_ssim, atol=2e-3)
  assert np.all(psnr > 20) and np.all(ssim < 1)
