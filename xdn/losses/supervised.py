"""Training losses: pure functions of a model's output and the clean image."""

import math
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from xdn import errors
from xdn.models import VAEOutput

Array = jax.Array


def mse(pred: Array, target: Array) -> Array:
  """Mean squared error over all pixels."""
  return jnp.mean(jnp.square(pred - target))


def l1(pred: Array, target: Array) -> Array:
  """Mean absolute error over all pixels."""
  return jnp.mean(jnp.abs(pred - target))


def log_normal_pdf(x: Array, mean: Array, logvar: Array) -> Array:
  """log N(x; mean, exp(logvar)) summed over the last axis, per example."""
  return jnp.sum(-0.5 * ((x - mean)**2 * jnp.exp(-logvar) + logvar
                         + math.log(2 * math.pi)), axis=-1)


def kl_divergence(mean: Array, logvar: Array) -> Array:
  """KL(N(mean, exp(logvar)) || N(0, I)), analytic, per example."""
  return -0.5 * jnp.sum(1 + logvar - mean**2 - jnp.exp(logvar), axis=-1)


def vae_loss(out: VAEOutput, clean: Array, *, elbo: str = 'monte_carlo',
             beta: float = 1.0) -> Tuple[Array, Dict[str, Array]]:
  """Negative ELBO of decoding `out` (from the noisy input) into `clean`.

  'monte_carlo' is the seed's single-sample estimate,
  -E[log p(x|z) + beta * (log p(z) - log q(z|x))] at the drawn z;
  'analytic' uses the closed-form KL term: -E[log p(x|z)] + beta * KL.
  Both are in nats per image; the reconstruction term is the Bernoulli
  log-likelihood (sigmoid cross-entropy on logits) summed over pixels.
  """
  xent = optax.sigmoid_binary_cross_entropy(out.logits, clean)
  recon = jnp.sum(xent, axis=tuple(range(1, clean.ndim)))
  if elbo == 'monte_carlo':
    kl = (log_normal_pdf(out.z, out.mean, out.logvar)
          - log_normal_pdf(out.z, 0.0, 0.0))
  elif elbo == 'analytic':
    kl = kl_divergence(out.mean, out.logvar)
  else:
    raise errors.UserError(f"unknown loss.elbo {elbo!r}; use 'monte_carlo' or "
                           "'analytic'")
  loss = jnp.mean(recon + beta * kl)
  return loss, {'recon': jnp.mean(recon), 'kl': jnp.mean(kl)}


def compute_loss(loss_config: ml_collections.ConfigDict, out,
                 clean: Array) -> Tuple[Array, Dict[str, Array]]:
  """The training loss for any model's output; returns (loss, extras)."""
  if isinstance(out, VAEOutput):
    return vae_loss(out, clean, elbo=loss_config.elbo, beta=loss_config.beta)
  if loss_config.name == 'mse':
    return mse(out, clean), {}
  if loss_config.name == 'l1':
    return l1(out, clean), {}
  raise errors.UserError(f"unknown loss.name {loss_config.name!r}; use 'mse' or "
                         "'l1'")
