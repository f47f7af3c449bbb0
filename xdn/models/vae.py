"""The seed's convolutional VAE, with an explicit PRNG key for sampling.

The encoder is the autoencoder's, ending in Dense(2 * latent_dim) split into
mean and log-variance; the decoder is the autoencoder's and returns logits
(pixel probabilities after a sigmoid). During training z is drawn by the
reparameterisation z = mean + exp(logvar / 2) * eps, with eps from the
'latent' rng stream; at evaluation z is the posterior mean, so denoising is
deterministic.
"""

from typing import Any, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from xdn.models.autoencoder import Decoder, Encoder


@flax.struct.dataclass
class VAEOutput:
  logits: jax.Array  # [B, H, W, 1] decoder logits.
  mean: jax.Array  # [B, latent_dim]
  logvar: jax.Array  # [B, latent_dim]
  z: jax.Array  # [B, latent_dim] the latent that was decoded.


def reparameterize(key: jax.Array, mean: jax.Array,
                   logvar: jax.Array) -> jax.Array:
  """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) from `key`."""
  eps = jax.random.normal(key, mean.shape, mean.dtype)
  return mean + jnp.exp(logvar * 0.5) * eps


class VAE(nn.Module):
  """Variational autoencoder over 64x64x1 images."""
  latent_dim: int = 64
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None  # See autoencoder.Encoder.
  conv_impl: str = 'auto'  # See layers.use_fast.

  def setup(self):
    self.encoder = Encoder(2 * self.latent_dim, dtype=self.dtype,
                           bn_axis_name=self.bn_axis_name,
                           conv_impl=self.conv_impl)
    self.decoder = Decoder(dtype=self.dtype, conv_impl=self.conv_impl)

  def encode(self, x, *, train: bool = False):
    """Returns (mean, logvar) of q(z | x), each [B, latent_dim]."""
    h = self.encoder(x, train=train).astype(jnp.float32)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, logvar

  def decode(self, z):
    """Returns the logits of p(x | z), [B, 64, 64, 1]."""
    return self.decoder(z).astype(jnp.float32)

  def sample(self, key: jax.Array, n: int):
    """n images generated from prior latents drawn with `key`, in [0, 1]."""
    z = jax.random.normal(key, (n, self.latent_dim))
    return nn.sigmoid(self.decode(z))

  def __call__(self, x, *, train: bool = False) -> VAEOutput:
    mean, logvar = self.encode(x, train=train)
    z = reparameterize(self.make_rng('latent'), mean, logvar) if train else mean
    return VAEOutput(logits=self.decode(z), mean=mean, logvar=logvar, z=z)
