"""The VAE's sampling is driven by explicit keys; its ELBO terms are right."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.losses import supervised as losses
from xdn.models import VAE, VAEOutput


@pytest.fixture(scope='module')
def vae_and_variables():
  model = VAE(latent_dim=8)
  variables = model.init({'params': jax.random.key(0),
                          'latent': jax.random.key(1)},
                         jnp.zeros((1, 64, 64, 1)), train=False)
  return model, variables


def test_same_key_same_sample_different_key_different(vae_and_variables):
  model, variables = vae_and_variables
  sample = lambda k: model.apply(variables, jax.random.key(k), 4,
                                 method=VAE.sample)
  a, b, c = sample(7), sample(7), sample(8)
  assert a.shape == (4, 64, 64, 1)
  assert np.all((a >= 0) & (a <= 1))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-4


def test_training_draws_latent_from_the_rng_stream(vae_and_variables):
  model, variables = vae_and_variables
  x = jax.random.uniform(jax.random.key(3), (2, 64, 64, 1))
  run = lambda k: model.apply(variables, x, train=True,
                              rngs={'latent': jax.random.key(k)},
                              mutable=['batch_stats'])[0]
  a, b, c = run(0), run(0), run(1)
  np.testing.assert_array_equal(a.z, b.z)
  assert np.abs(a.z - c.z).max() > 1e-4
  # At evaluation z is the posterior mean: deterministic, no rng needed.
  out = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(out.z, out.mean)


def test_kl_is_zero_for_standard_normal_posterior():
  mean = jnp.zeros((3, 5))
  logvar = jnp.zeros((3, 5))
  np.testing.assert_allclose(losses.kl_divergence(mean, logvar), 0.0)
  assert np.all(losses.kl_divergence(mean + 1.0, logvar) > 0)


def test_log_normal_pdf_matches_closed_form():
  x = jnp.array([[0.3, -1.2]])
  got = losses.log_normal_pdf(x, 0.0, 0.0)
  want = np.sum(-0.5 * np.asarray(x)**2 - 0.5 * math.log(2 * math.pi))
  np.testing.assert_allclose(got, [want], rtol=1e-6)


def test_monte_carlo_kl_averages_to_analytic_kl():
  key = jax.random.key(0)
  mean = jnp.full((20000, 4), 0.7)
  logvar = jnp.full((20000, 4), -0.5)
  eps = jax.random.normal(key, mean.shape)
  z = mean + jnp.exp(logvar / 2) * eps
  mc = losses.log_normal_pdf(z, mean, logvar) - losses.log_normal_pdf(
      z, 0.0, 0.0)
  np.testing.assert_allclose(np.mean(mc), losses.kl_divergence(mean, logvar)[0],
                             rtol=0.03)


@pytest.mark.parametrize('elbo', ['monte_carlo', 'analytic'])
def test_vae_loss_uses_clean_target_and_beta(elbo):
  logits = jnp.zeros((2, 4, 4, 1))
  out = VAEOutput(logits=logits, mean=jnp.ones((2, 3)),
                  logvar=jnp.zeros((2, 3)), z=jnp.ones((2, 3)))
  clean = jnp.full((2, 4, 4, 1), 0.5)
  loss1, parts = losses.vae_loss(out, clean, elbo=elbo, beta=1.0)
  loss0, _ = losses.vae_loss(out, clean, elbo=elbo, beta=0.0)
  # Bernoulli cross-entropy of p=0.5 on 16 pixels: 16 log 2 nats.
  np.testing.assert_allclose(parts['recon'], 16 * math.log(2), rtol=1e-6)
  np.testing.assert_allclose(loss0, 16 * math.log(2), rtol=1e-6)
  np.testing.assert_allclose(loss1 - loss0, parts['kl'], rtol=1e-5)
  with pytest.raises(ValueError, match='elbo'):
    losses.vae_loss(out, clean, elbo='nope')
