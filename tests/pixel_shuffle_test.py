"""Pixel-shuffle downsampling: the shuffle, the stride rule, and its use in
the self-supervised losses, the eval step and the Denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.inference import denoiser as inference
from xdn.losses import self_supervised as ss
from xdn.models import pixel_shuffle as pd
from xdn.noise import physics as noise_physics
from tests.self_supervised_test import keys, make_config
from tests.self_supervised_test import model_and_variables, noisy_images


@pytest.mark.parametrize('stride', [2, 3, 5])
def test_merge_undoes_split(stride):
  x = jnp.arange(2 * 30 * 30 * 1, dtype=jnp.float32).reshape(2, 30, 30, 1)
  subs = pd.split(x, stride)
  assert subs.shape == (2 * stride**2, 30 // stride, 30 // stride, 1)
  # Sub-image (i, j) of image b holds pixels (i + s y, j + s x).
  np.testing.assert_array_equal(subs[stride * 1 + 1],
                                x[0, 1::stride, 1::stride][:30 // stride,
                                                           :30 // stride])
  size = 30 // stride * stride
  np.testing.assert_array_equal(pd.merge(subs, stride), x[:, :size, :size])


def test_shuffled_denoising_keeps_the_size_and_is_exact_for_identity():
  x = jax.random.uniform(jax.random.key(0), (1, 37, 41, 1))
  for shifts in (False, True):
    np.testing.assert_allclose(pd.denoise_shuffled(lambda v: v, x, 3,
                                                   shifts), x, atol=1e-6)


def test_shifted_shuffles_remove_the_sub_image_grid():
  # A model that treats the sub-images differently (here: sub-image k
  # gains k / 100) leaves a stride-periodic grid; the shifts average it out.
  x = jnp.full((1, 32, 32, 1), 0.5)
  offset = lambda v: v + (jnp.arange(v.shape[0]) / 100.0)[:, None, None,
                                                          None]
  grid = np.asarray(pd.denoise_shuffled(offset, x, 2, shifts=False))
  assert len(np.unique(grid.round(6))) == 4
  smooth = np.asarray(pd.denoise_shuffled(offset, x, 2, shifts=True))
  assert np.ptp(smooth) < 1e-6
  assert smooth.mean() == pytest.approx(0.5 + 0.015, abs=1e-6)


@pytest.mark.parametrize('rho', [0.0, 0.3, 0.5, 0.7, 0.85])
def test_stride_leaves_nearly_independent_noise(rho):
  stride = pd.stride_for(rho)
  assert 2 <= stride <= pd.MAX_STRIDE
  assert stride >= pd.stride_for(max(rho - 0.2, 0.0))
  n = noise_physics.add_correlated_gaussian_noise(
      jax.random.key(0), jnp.zeros((4, 240, 240, 1)), 25.0, rho)
  subs = np.asarray(pd.split(n, stride))[..., 0]
  measured = np.mean(subs[:, 1:] * subs[:, :-1]) / np.mean(subs * subs)
  assert measured < pd.INDEPENDENT + 0.05, (stride, measured)
  # One stride less would not do (where there is one less).
  if stride > 2:
    closer = np.asarray(pd.split(n, stride - 1))[..., 0]
    assert (np.mean(closer[:, 1:] * closer[:, :-1]) /
            np.mean(closer * closer)) > measured


def test_auto_stride_from_the_noise_or_the_images():
  config = make_config('neighbor2neighbor')
  config.loss.pd_stride = -1
  resolved = pd.resolve(config.copy_and_resolve_references(), lambda: 0.6)
  assert resolved.loss.pd_stride == pd.stride_for(0.6)
  config.loss.pd_stride = 3
  assert pd.resolve(config, lambda: 0.6).loss.pd_stride == 3


@pytest.mark.parametrize('loss', [
    pytest.param('noise2self', marks=pytest.mark.slow),  # CI: -m slow.
    'neighbor2neighbor'])
def test_losses_train_on_sub_images(loss):
  config = make_config(loss)
  config.loss.pd_stride = 2
  config.loss.mask_box = 3
  ss.check_config(config)
  model, variables = model_and_variables(config)
  images = noisy_images(n=2, size=32)
  seen = []

  def apply(x):
    seen.append(x.shape)
    return model.apply(variables, x, train=False), {}

  value, _, denoised, _ = ss.loss_and_output(apply, images, keys(2), config,
                                             per_image=True)
  assert value.shape == (2,) and np.all(np.isfinite(value))
  assert denoised.shape == images.shape
  assert all(s[0] == 8 for s in seen)  # 2 images x 4 sub-images each.

  def total(v):
    return ss.loss_and_output(
        lambda x: (model.apply(v, x, train=False), {}), images, keys(2),
        config)[0]
  grads = jax.grad(total)(variables)
  norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
  assert np.isfinite(norm) and norm > 0


def test_bad_stride_is_a_one_line_error():
  config = make_config('neighbor2neighbor')
  config.loss.pd_stride = 9
  with pytest.raises(ss.errors.UserError, match='pd_stride'):
    ss.check_config(config)


def test_denoiser_applies_a_shuffle_trained_model_through_the_shuffle():
  config = make_config('neighbor2neighbor')
  config.loss.pd_stride = 4
  config.loss.pd_inference_stride = 2
  _, variables = model_and_variables(config)
  denoiser = inference.Denoiser(config, variables, step=0, name='pd',
                                ensemble_max_pixels=0)
  assert denoiser.size_multiple == 2 * inference.models.size_multiple(config)
  x = np.asarray(noisy_images(n=1, size=48))
  plain = config.copy_and_resolve_references()
  plain.loss.pd_stride = 0
  direct = inference.Denoiser(plain, variables, step=0, name='plain',
                              ensemble_max_pixels=0)
  forward = direct.forward()  # Unclipped: the Denoiser clips the mean.
  by_hand = jnp.clip(pd.denoise_shuffled(
      lambda v: forward(variables, v, None, True), jnp.asarray(x), 2), 0, 1)
  np.testing.assert_allclose(denoiser(x), by_hand, atol=1e-5)
  unshuffled = direct(x)
  assert np.abs(np.asarray(by_hand) - unshuffled).max() > 1e-4
