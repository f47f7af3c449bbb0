"""xdn.models.layers equals flax.linen's Conv / ConvTranspose, gradients too."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.models import layers

# (kernel, stride, padding) of every layer the models build, and a few more.
CONVS = [
    (3, 2, 'VALID'),  # autoencoder / vae encoder
    (3, 1, 'SAME'), (3, 2, 'SAME'), (1, 1, 'SAME'),  # unet
    (4, 1, 'SAME'), (8, 2, 'SAME'), (4, 2, 'SAME'),  # seed_skip encoder
    (5, 3, 'VALID'), (2, 2, ((1, 0), (2, 1))),  # general cases
]
CONV_TRANSPOSES = [
    (3, 4, 'SAME'), (3, 2, 'SAME'), (3, 1, 'SAME'),  # autoencoder / vae
    (2, 2, 'SAME'),  # unet
    (4, 2, 'SAME'), (8, 2, 'SAME'), (16, 2, 'SAME'), (64, 1, 'SAME'),  # skip
    (3, 2, 'VALID'), (5, 3, 'VALID'), (4, 3, ((2, 1), (0, 3))),  # general
]


def assert_same_layer(ref: nn.Module, fast: nn.Module, shape) -> None:
  """Same parameters, outputs and gradients (inputs and params)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape, np.float32))
  variables = ref.init(jax.random.key(0), x)
  fast_variables = fast.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, variables) ==
          jax.tree.map(jnp.shape, fast_variables))
  # Non-zero bias too, so its gradient path is exercised.
  variables = jax.tree.map(
      lambda v: jnp.asarray(rng.standard_normal(v.shape, np.float32)),
      variables)
  y_ref = ref.apply(variables, x)
  y_fast = fast.apply(variables, x)
  assert y_ref.shape == y_fast.shape
  cotangent = jnp.asarray(rng.standard_normal(y_ref.shape, np.float32))
  grad = lambda m: jax.grad(lambda v, x: jnp.sum(m.apply(v, x) * cotangent),
                            argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree.leaves((y_ref, grad(ref))),
                  jax.tree.leaves((y_fast, grad(fast)))):
    scale = float(jnp.max(jnp.abs(a))) + 1e-6
    np.testing.assert_allclose(np.asarray(b) / scale, np.asarray(a) / scale,
                               atol=2e-5)


# Fewer and more output than input channels: the kernel gradient is read
# off a different convolution in each case.
@pytest.mark.parametrize('features', [3, 2])
@pytest.mark.parametrize('kernel,stride,padding', CONVS)
def test_conv_equals_flax(kernel, stride, padding, features):
  args = dict(features=features, kernel_size=(kernel, kernel),
              strides=(stride, stride), padding=padding)
  size = max(9, kernel + 2)
  assert_same_layer(nn.Conv(**args), layers.Conv(**args),
                    (2, size, size + 1, 2))


@pytest.mark.parametrize('features', [3, 2])
@pytest.mark.parametrize('kernel,stride,padding', CONV_TRANSPOSES)
def test_conv_transpose_equals_flax(kernel, stride, padding, features):
  args = dict(features=features, kernel_size=(kernel, kernel),
              strides=(stride, stride), padding=padding)
  assert_same_layer(nn.ConvTranspose(**args), layers.ConvTranspose(**args),
                    (2, 5, 6, 2))


@pytest.mark.parametrize('ref,fast', [
    (nn.Conv(3, (3, 3), (2, 2)), layers.Conv(3, (3, 3), (2, 2))),
    (nn.Conv(2, (3, 3)), layers.Conv(2, (3, 3))),
    (nn.ConvTranspose(3, (3, 3), (2, 2)),
     layers.ConvTranspose(3, (3, 3), (2, 2))),
])
def test_second_order_gradients_equal_flax(ref, fast):
  """The custom gradient is itself differentiable (e.g. gradient penalties)."""
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 7, 8, 2),
                                                           np.float32))
  variables = ref.init(jax.random.key(0), x)

  def grad_norm(m, v):
    g = jax.grad(lambda x: jnp.sum(jnp.tanh(m.apply(v, x))))(x)
    return jnp.sum(g**2)

  a = jax.grad(lambda v: grad_norm(ref, v))(variables)
  b = jax.grad(lambda v: grad_norm(fast, v))(variables)
  for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = float(jnp.max(jnp.abs(u))) + 1e-6
    np.testing.assert_allclose(np.asarray(w) / scale, np.asarray(u) / scale,
                               atol=2e-5)


def test_options_and_fallbacks_equal_flax():
  """use_bias=False, unbatched input, dilation (lax fallback), bfloat16."""
  assert_same_layer(nn.ConvTranspose(4, (3, 3), (2, 2), use_bias=False),
                    layers.ConvTranspose(4, (3, 3), (2, 2), use_bias=False),
                    (6, 5, 2))
  assert_same_layer(nn.Conv(4, (3, 3), kernel_dilation=2),
                    layers.Conv(4, (3, 3), kernel_dilation=2), (2, 9, 9, 2))
  assert_same_layer(
      nn.ConvTranspose(4, (3, 3), (2, 2), kernel_dilation=(2, 2)),
      layers.ConvTranspose(4, (3, 3), (2, 2), kernel_dilation=(2, 2)),
      (2, 5, 5, 2))
  x = jnp.ones((2, 8, 8, 3))
  for ref, fast in ((nn.Conv(4, (3, 3), (2, 2), dtype=jnp.bfloat16),
                     layers.Conv(4, (3, 3), (2, 2), dtype=jnp.bfloat16)),
                    (nn.ConvTranspose(4, (3, 3), (2, 2), dtype=jnp.bfloat16),
                     layers.ConvTranspose(4, (3, 3), (2, 2),
                                          dtype=jnp.bfloat16))):
    v = ref.init(jax.random.key(0), x)
    y_ref, y_fast = ref.apply(v, x), fast.apply(v, x)
    assert y_fast.dtype == y_ref.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y_fast, np.float32),
                               np.asarray(y_ref, np.float32), rtol=2e-2,
                               atol=2e-2)
