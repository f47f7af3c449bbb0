"""Self-supervised losses: masks, sub-samplers, SURE, noise levels, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.configs import default
from xdn.losses import self_supervised as ss
from xdn import models
from xdn.noise import estimation as noise_estimation


def make_config(loss='noise2self', **model_fields):
  config = default.get_config()
  # XLA's convolutions compile faster than xdn's CPU ones: tests stay short.
  config.model = default.model_config(
      'unet', **{'depth': 2, 'base_width': 8, 'conv_impl': 'xla',
                 **model_fields})
  config.noise.kind = 'none'
  config.noise.level = 0.0
  config.loss.name = loss
  if loss == 'sure':
    config.loss.noise_sigma = 25.0
  return config


def noisy_images(n=4, size=32, sigma=25.0, seed=0):
  rng = np.random.default_rng(seed)
  clean = np.kron(rng.random((n, size // 8, size // 8, 1)),
                  np.ones((1, 8, 8, 1)))
  noisy = clean + sigma / 255 * rng.normal(size=clean.shape)
  return jnp.asarray(np.clip(noisy, 0, 1), jnp.float32)


def model_and_variables(config, size=32):
  model = models.create_model(config)
  channels = 2 if config.model.get('noise_map', False) else 1
  variables = model.init(jax.random.key(0), jnp.zeros((1, size, size,
                                                       channels)))
  return model, variables


def keys(n, seed=1):
  return jax.random.split(jax.random.key(seed), n)


# ------------------------------------------------------------ blind spot


@pytest.mark.parametrize('density,cell', [(0.0625, 4), (0.25, 2), (0.01, 10)])
def test_mask_has_one_pixel_per_cell(density, cell):
  assert ss.cell_size(density) == cell
  mask = np.asarray(ss.blind_spot_mask(jax.random.key(0), 40, 40, density))
  per_cell = mask.reshape(40 // cell, cell, 40 // cell, cell).sum((1, 3))
  np.testing.assert_array_equal(per_cell, 1)
  assert mask.mean() == pytest.approx(1 / cell**2)
  other = np.asarray(ss.blind_spot_mask(jax.random.key(1), 40, 40, density))
  assert not np.array_equal(mask, other)


def test_mask_fits_sizes_that_are_no_multiple_of_the_cell():
  mask = ss.blind_spot_mask(jax.random.key(0), 30, 13, 0.0625)
  assert mask.shape == (30, 13)
  assert 0 < int(mask.sum()) <= 8 * 4


@pytest.mark.parametrize('how', ss.REPLACEMENTS)
def test_replacement_never_depends_on_the_pixel_itself(how):
  image = jax.random.uniform(jax.random.key(0), (9, 7, 1))
  jacobian = jax.jacobian(
      lambda x: ss.replacement_values(jax.random.key(1), x, 5, how))(image)
  own = np.asarray(jacobian).reshape(63, 63).diagonal()
  np.testing.assert_array_equal(own, 0.0)


def test_random_replacement_is_another_pixel_of_the_box():
  # Unique values: any copy of the pixel itself would show, borders included.
  image = jnp.arange(100.0).reshape(10, 10, 1)
  values = np.asarray(ss.replacement_values(jax.random.key(3), image, 3,
                                            'random'))[..., 0]
  rows, cols = np.divmod(values.astype(int), 10)
  own_r, own_c = np.mgrid[:10, :10]
  assert np.all(values != np.asarray(image)[..., 0])
  # Reflect padding maps border neighbours back inside the 3x3 box.
  assert np.all(np.abs(rows - own_r) <= 1) and np.all(np.abs(cols - own_c) <= 1)


def test_only_masked_pixels_count():
  config = make_config('noise2self')
  noisy = noisy_images()
  # The gradient of the loss w.r.t. an offset added to the output is
  # non-zero exactly where the loss looks: the masked pixels.
  grad = jax.grad(lambda d: ss.loss_and_output(
      lambda x: (x + d, {}), noisy, keys(4), config)[0])(
          jnp.ones_like(noisy))
  counted = np.asarray(grad) != 0
  assert counted.mean() == pytest.approx(config.loss.mask_density)
  per_image = counted.reshape(4, 8, 4, 8, 4).sum((2, 4))
  np.testing.assert_array_equal(per_image, 1)  # One per 4x4 cell.


def test_masked_input_differs_from_noisy_only_at_masked_pixels():
  config = make_config('noise2self')
  noisy = noisy_images()
  seen = []
  ss.loss_and_output(lambda x: (seen.append(x) or x, {}), noisy, keys(4),
                     config)
  changed = np.asarray(seen[0] != noisy)
  assert 0 < changed.mean() <= config.loss.mask_density


# ------------------------------------------------------ neighbor2neighbor


def test_neighbour_pairs_are_distinct_adjacent_pixels_of_each_cell():
  pairs = np.asarray(ss.neighbour_pair_indices(jax.random.key(0), 64, 64))
  assert pairs.shape == (32, 32, 2)
  first, second = pairs[..., 0], pairs[..., 1]
  assert np.all(first != second)
  # Positions are 2 * row + col: adjacent pixels differ in one bit.
  assert set(np.unique(first ^ second)) == {1, 2}
  assert len(np.unique(first)) == 4 and len(np.unique(second)) == 4


def test_subsample_takes_the_chosen_pixel_of_each_cell():
  image = jnp.arange(64.0).reshape(8, 8, 1)
  positions = ss.neighbour_pair_indices(jax.random.key(2), 8, 8)
  for k in range(2):
    sub = np.asarray(ss.subsample(image, positions[..., k]))[..., 0]
    rows, cols = np.divmod(sub.astype(int), 8)
    row_in, col_in = np.divmod(np.asarray(positions[..., k]), 2)
    np.testing.assert_array_equal(rows, 2 * np.arange(4)[:, None] + row_in)
    np.testing.assert_array_equal(cols, 2 * np.arange(4)[None, :] + col_in)


def test_neighbor2neighbor_gamma_ramps_with_progress():
  config = make_config('neighbor2neighbor')
  noisy = noisy_images()
  identity = lambda x: (x, {})
  _, early, _, _ = ss.loss_and_output(identity, noisy, keys(4), config,
                                      progress=0.0)
  _, late, _, _ = ss.loss_and_output(identity, noisy, keys(4), config,
                                     progress=0.5)
  assert float(early['gamma']) == 0.0
  assert float(late['gamma']) == pytest.approx(config.loss.ne2ne_gamma / 2)


# ----------------------------------------------------------- all losses


@pytest.mark.parametrize('loss,noise_map', [
    ('noise2self', True), ('neighbor2neighbor', True), ('sure', False)])
def test_shapes_and_finite_nonzero_gradients(loss, noise_map):
  config = make_config(loss, noise_map=noise_map, depth=1, base_width=4)
  config.data.image_size = 16
  ss.check_config(config)
  model, variables = model_and_variables(config, size=16)
  noisy = noisy_images(size=16)

  def loss_fn(params):
    apply = lambda x: model.apply({**variables, 'params': params}, x,
                                  train=True, mutable=['batch_stats'])
    loss_value, extras, denoised, _ = ss.loss_and_output(
        apply, noisy, keys(4), config, progress=0.5)
    return loss_value, (extras, denoised)

  (value, (extras, denoised)), grads = jax.jit(jax.value_and_grad(
      loss_fn, has_aux=True))(variables['params'])
  assert value.shape == () and np.isfinite(value)
  assert denoised.shape == noisy.shape
  assert all(np.isfinite(v) for v in jax.tree.leaves(extras))
  for g in jax.tree.leaves(grads):
    assert np.all(np.isfinite(g)) and np.any(g != 0)
  per_image, *_ = jax.jit(lambda y: ss.loss_and_output(
      lambda x: (model.apply(variables, x, train=False), {}), y,
      keys(4), config, per_image=True))(noisy)
  assert per_image.shape == (4,)


def test_sure_estimates_the_clean_mse():
  # For the identity f(y) = y: SURE = -sigma^2 + 2 sigma^2 = sigma^2, the
  # true MSE of y against the clean image.
  config = make_config('sure')
  noisy = noisy_images(n=2, size=64)
  value, extras, _, _ = ss.loss_and_output(lambda x: (x, {}), noisy, keys(2),
                                           config)
  # Up to the Monte-Carlo error of the probe (about 1% at 2 x 64 x 64).
  assert float(value) == pytest.approx((25 / 255)**2, rel=0.05)
  assert float(extras['divergence']) == pytest.approx(1.0, rel=0.05)


# ------------------------------------------------------------ noise level


def test_estimate_sigma_matches_the_inference_estimator():
  noisy = noisy_images(n=3, size=64, sigma=20.0)
  ours = np.asarray(ss.estimate_sigma(noisy)) * 255
  theirs = [noise_estimation.estimate_gaussian_sigma(np.asarray(x[..., 0]))
            for x in noisy]
  np.testing.assert_allclose(ours, theirs, rtol=1e-4)
  np.testing.assert_allclose(ours, 20.0, rtol=0.2)


def test_batch_variance_law_added_stated_or_estimated():
  noisy = noisy_images(n=2)
  a, b = jnp.array([0.1, 0.2]), jnp.array([0.3, 0.4])
  config = make_config()
  config.noise.kind = 'poisson_gaussian'  # Added by the step: known.
  np.testing.assert_array_equal(ss.batch_variance_law(noisy, a, b, config)[1],
                                b)
  config = make_config()
  config.loss.noise_sigma = 51.0
  np.testing.assert_allclose(ss.batch_variance_law(noisy, a, b, config)[1],
                             0.04)
  config.loss.noise_sigma = 0.0
  a_est, b_est = ss.batch_variance_law(noisy, a, b, config)
  np.testing.assert_array_equal(a_est, 0.0)
  np.testing.assert_allclose(np.sqrt(b_est) * 255, 25.0, rtol=0.25)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize('change,match', [
    (dict(loss='noise2self', model='vae'), 'outputs an image'),
    (dict(loss='neighbor2neighbor', model='autoencoder'),
     'fully convolutional'),
    (dict(loss='noise2self', mask_replace='zeros'), 'mask_replace'),
    (dict(loss='noise2self', mask_box=4), 'mask_box'),
    (dict(loss='noise2self', mask_density=0.5), 'mask_density'),
    (dict(loss='sure', noise_sigma=0.0), 'noise_sigma'),
])
def test_bad_configs_are_refused_in_one_line(change, match):
  config = make_config(change.pop('loss'))
  if 'model' in change:
    config.model = default.model_config(change.pop('model'))
  config.loss.update(change)
  with pytest.raises(ValueError, match=match) as info:
    ss.check_config(config)
  assert '\n' not in str(info.value)


def test_sure_with_gaussian_noise_added_in_the_step_needs_no_sigma():
  config = make_config('sure')
  config.loss.noise_sigma = 0.0
  config.noise.kind = 'gaussian'
  config.noise.level = 25.0
  ss.check_config(config)
  assert ss.has_clean_target(config)
  assert not ss.has_clean_target(make_config())
