"""Shapes, parameter counts and gradients of every model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.configs import default
from xdn.losses import supervised as losses
from xdn import models
from xdn.models import conditioning
from xdn.noise import synthetic as noise


def make_config(name, **model_fields):
  config = default.get_config()
  config.model = default.model_config(name, **model_fields)
  return config


def init(model, x, key=0):
  return model.init({'params': jax.random.key(key),
                     'latent': jax.random.key(key + 1)}, x, train=False)


def count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


# Small U-Net so the suite stays fast; the default one is checked by shape.
TINY_UNET = dict(depth=2, base_width=4)


@pytest.mark.parametrize('name,expected', [
    ('autoencoder', 1_111_105),  # The Keras seed model's count.
    ('seed_skip', 12_634_631),
])
def test_seed_parameter_counts(name, expected):
  model = models.create_model(make_config(name))
  variables = jax.eval_shape(lambda: init(model, jnp.zeros((1, 64, 64, 1))))
  assert count(variables) == expected


def test_vae_encoder_ends_in_twice_the_latent():
  model = models.create_model(make_config('vae', latent_dim=16))
  variables = jax.eval_shape(lambda: init(model, jnp.zeros((1, 64, 64, 1))))
  assert variables['params']['encoder']['dense']['kernel'].shape == (
      15 * 15 * 64, 32)


@pytest.mark.parametrize('name', ['autoencoder', 'vae', 'seed_skip', 'unet'])
def test_output_shape(name):
  model = models.create_model(make_config(name))
  x = jnp.zeros((2, 64, 64, 1))
  variables = jax.eval_shape(lambda: init(model, x))
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  image = out.logits if name == 'vae' else out
  assert image.shape == (2, 64, 64, 1)
  assert image.dtype == jnp.float32


@pytest.mark.parametrize('shape', [(1, 37, 50, 1), (2, 64, 64, 1),
                                   (1, 5, 9, 1), (1, 128, 96, 1)])
@pytest.mark.parametrize('down,up', [('conv', 'transpose'), ('pool', 'resize')])
def test_unet_any_size(shape, down, up):
  model = models.create_model(make_config('unet', down=down, up=up,
                                          **TINY_UNET))
  x = jax.random.uniform(jax.random.key(0), shape)
  variables = init(model, x)
  out = model.apply(variables, x, train=False)
  assert out.shape == shape
  assert np.all(np.isfinite(out))


def test_unet_residual_returns_input_minus_predicted_noise():
  config = make_config('unet', **TINY_UNET)
  x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 1))
  residual = models.create_model(config)
  variables = init(residual, x)
  config.model.residual = False
  plain = models.create_model(config)
  np.testing.assert_allclose(
      residual.apply(variables, x, train=False),
      x - plain.apply(variables, x, train=False), atol=1e-6)


@pytest.mark.parametrize('name,fields', [
    ('autoencoder', {}), ('vae', {}), ('seed_skip', {}),
    ('unet', TINY_UNET), ('unet', dict(TINY_UNET, norm='group', up='resize')),
    ('unet', dict(TINY_UNET, norm='none', down='pool')),
])
def test_every_parameter_gets_a_finite_nonzero_gradient(name, fields):
  config = make_config(name, **fields)
  model = models.create_model(config)
  clean = jax.random.uniform(jax.random.key(0), (2, 64, 64, 1))
  noisy = clean + 0.1 * jax.random.normal(jax.random.key(1), clean.shape)
  variables = init(model, noisy)

  def loss_fn(params):
    out, _ = model.apply({**variables, 'params': params}, noisy, train=True,
                         rngs={'latent': jax.random.key(2)},
                         mutable=['batch_stats'])
    return losses.compute_loss(config.loss, out, clean)[0]

  grads = jax.grad(loss_fn)(variables['params'])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(g)), name
    assert np.any(g != 0), f'zero gradient for {name}'


def test_image_size_checked_against_model():
  config = make_config('autoencoder')
  config.data.image_size = 128
  with pytest.raises(ValueError, match='image_size'):
    models.check_config(config)
  config.model = default.model_config('unet')
  models.check_config(config)  # Any size is fine for the U-Net.
  config.model.name = 'nope'
  with pytest.raises(ValueError, match='unknown model.name'):
    models.check_config(config)


def test_fields_of_another_model_are_refused():
  config = make_config('unet')
  config.model.latent_dim = 64  # An autoencoder field.
  with pytest.raises(ValueError, match=r'model.latent_dim is not a field of '
                     r"model 'unet'.*configs/unet.py"):
    models.create_model(config)


def test_registry_fields_are_the_module_fields():
  assert set(models.REGISTRY['unet'].fields()) >= {'depth', 'base_width',
                                                   'noise_map', 'use_bias'}
  assert set(models.REGISTRY['autoencoder'].fields()) == {'latent_dim'}
  assert models.size_multiple(make_config('unet', depth=3)) == 8
  assert models.size_multiple(make_config('vae')) == 1


def test_saved_flat_model_sections_still_load():
  flat = {'name': 'unet', 'latent_dim': 64, 'depth': 2, 'base_width': 4,
          'dtype': 'float32'}
  restored = models.restore_model_config(flat)
  assert 'latent_dim' not in restored and restored.depth == 2


@pytest.mark.parametrize('name', ['autoencoder', 'unet'])
def test_conv_impl_xla_and_fast_give_the_same_model(name):
  fields = TINY_UNET if name == 'unet' else {}
  x = jax.random.uniform(jax.random.key(3), (2, 64, 64, 1))
  outputs = []
  for impl in ('fast', 'xla'):
    model = models.create_model(make_config(name, conv_impl=impl, **fields))
    variables = init(model, x)
    outputs.append((jax.tree.map(jnp.shape, variables),
                    model.apply(variables, x, train=False)))
  assert outputs[0][0] == outputs[1][0]  # Same parameter tree and shapes.
  np.testing.assert_allclose(outputs[0][1], outputs[1][1], atol=1e-4)


def test_noise_map_unet_takes_two_channels_and_returns_one():
  model = models.create_model(make_config('unet', noise_map=True,
                                          use_bias=False, norm='none',
                                          **TINY_UNET))
  x = jnp.ones((2, 20, 24, 2)) * 0.5
  variables = init(model, x)
  out = model.apply(variables, x, train=False)
  assert out.shape == (2, 20, 24, 1)
  assert not any('bias' in jax.tree_util.keystr(p) for p, _ in
                 jax.tree_util.tree_leaves_with_path(variables))
  # Bias-free: scaling image and noise map scales the output (homogeneous).
  np.testing.assert_allclose(model.apply(variables, 2 * x, train=False),
                             2 * out, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------- what a model takes


def test_registry_declares_what_each_model_takes():
  told = make_config('unet', depth=3, noise_map=True, correlation_map=True)
  caps = models.capabilities(told)
  assert caps.fixed_size is None and caps.size_multiple == 8
  assert caps.takes_valid and caps.takes_noise_map and caps.takes_correlation
  assert caps.told.channels == models.noise_channels(told) == 2
  assert caps.pixel_shuffle == 1 and not caps.takes_xray_law
  with told.unlocked():
    told.noise.xray_law_fraction = 0.5
    told.loss.pd_stride, told.loss.pd_inference_stride = 4, 2
  caps = models.capabilities(told)
  assert caps.takes_xray_law and caps.pixel_shuffle == 2
  # Shuffled sub-images: tiles on a coarser grid, no exact size buckets.
  assert caps.size_multiple == 16 and not caps.takes_valid
  seed = models.capabilities(make_config('autoencoder'))
  assert seed.fixed_size == 64 and not seed.takes_noise_map
  assert not seed.takes_valid and seed.told.channels == 0
  # Maps a model without a noise map would ignore are not declared.
  plain = make_config('unet', correlation_map=True, strength_map=True)
  assert models.capabilities(plain).told.channels == 0
  # Anything that declares nothing is a plain model of any size.
  assert models.capabilities_of(lambda x: x) == models.PLAIN


def _maps(s, told, **kwargs):
  """Inputs of one 8x8 image told var 0.01 and correlation 0.3 at s."""
  x = jnp.linspace(0.2, 0.8, 2 * 64).reshape(2, 8, 8, 1)
  a, b, rho = jnp.zeros(2), jnp.full(2, 0.01), jnp.full(2, 0.3)
  return x, np.asarray(conditioning.model_input(
      x, a, b, told, correlation=rho,
      strength=None if s is None else jnp.full(2, s), **kwargs))


STRENGTH_MAP = conditioning.Conditioning(True, True, True)


def test_strength_map_models_are_told_s_up_to_full_and_more_noise_beyond():
  # Up to full: the noise as it is, s in its own channel, bit for bit what
  # training built before the rule had one home (no scale at all).
  for s in (0.3, 0.65, 1.0):
    x, told = _maps(s, STRENGTH_MAP)
    trained = noise.with_noise_map(x, 0.0, 0.01, 0.3,
                                   strength=jnp.full(2, s))
    np.testing.assert_array_equal(told, trained)
  _, none = _maps(None, STRENGTH_MAP)
  np.testing.assert_array_equal(none, _maps(1.0, STRENGTH_MAP)[1])
  # Beyond full: told s times the noise, at full strength (channel 0).
  x, told = _maps(1.5, STRENGTH_MAP)
  np.testing.assert_allclose(told[..., 1:3], 1.5 * _maps(1.0, STRENGTH_MAP)[
      1][..., 1:3], rtol=1e-6)
  assert not told[..., 3].any()


def test_models_without_a_strength_map_are_told_s_times_the_noise():
  for told, channels in ((conditioning.Conditioning(True), 2),
                         (conditioning.Conditioning(True, True), 3)):
    _, full = _maps(None, told)
    _, half = _maps(0.5, told)
    assert full.shape[-1] == half.shape[-1] == channels
    np.testing.assert_allclose(half[..., 1:], 0.5 * full[..., 1:], rtol=1e-6)
  x, plain = _maps(0.5, conditioning.NONE)
  np.testing.assert_array_equal(plain, x)


def test_fidelity_branch_is_declared_only_on_a_strength_map():
  fields = dict(noise_map=True, correlation_map=True, strength_map=True,
                fidelity_branch_width=8)
  assert conditioning.Conditioning.from_fields(fields).fidelity_branch
  base = conditioning.without_fidelity_branch(make_config('unet', **fields))
  told = models.capabilities(base).told
  assert (told.channels, told.fidelity_branch) == (2, False)
  assert not conditioning.Conditioning.from_fields(
      dict(fields, strength_map=False)).fidelity_branch
