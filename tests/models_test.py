"""Shapes, parameter counts and gradients of every model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.configs import default
from xdn.losses import supervised as losses
from xdn import models


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
