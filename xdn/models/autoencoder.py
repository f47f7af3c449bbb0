"""The seed's convolutional autoencoder (64x64x1), layer for layer.

Keras original: Conv32 k3 s2 relu (VALID) -> Conv64 k3 s2 relu (VALID) ->
BatchNorm -> Flatten -> Dense(latent); decoder Dense(8*8*32) relu ->
reshape -> ConvT64 k3 s4 SAME relu -> ConvT32 k3 s2 SAME relu ->
ConvT1 k3 s1 SAME linear. With latent_dim=64 it has 1,111,105 parameters
(BatchNorm statistics included), like the Keras model. Initialisers and
BatchNorm epsilon follow Keras's defaults so training behaves alike.
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from xdn.models import layers

# Keras's defaults, for faithfulness to the seed models.
KERAS_INIT = nn.initializers.glorot_uniform()
KERAS_BN_EPSILON = 1e-3
SEED_SIZE = 64  # The seed models take 64x64x1 images.


class Encoder(nn.Module):
  """Two strided convolutions, BatchNorm, and a Dense projection."""
  out_dim: int
  dtype: Any = jnp.float32
  # Set to the pmap axis name to average BatchNorm statistics over all
  # devices (synchronised BatchNorm): training on N devices then equals
  # training on one with the same global batch.
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'auto'  # See layers.use_fast.

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = lambda f, name: layers.make_conv(
        self.conv_impl, f, (3, 3), strides=(2, 2), padding='VALID', kernel_init=KERAS_INIT,
        dtype=self.dtype, name=name)
    x = nn.relu(conv(32, 'conv1')(x))
    x = nn.relu(conv(64, 'conv2')(x))
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99,
                     epsilon=KERAS_BN_EPSILON, dtype=self.dtype,
                     axis_name=self.bn_axis_name, name='bn')(x)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.out_dim, kernel_init=KERAS_INIT, dtype=self.dtype,
                    name='dense')(x)


class Decoder(nn.Module):
  """Dense to an 8x8x32 map, then three transposed convolutions to 64x64x1."""
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'

  @nn.compact
  def __call__(self, z):
    x = nn.relu(nn.Dense(8 * 8 * 32, kernel_init=KERAS_INIT, dtype=self.dtype,
                         name='dense')(z))
    x = x.reshape((x.shape[0], 8, 8, 32))
    convt = lambda f, s, name: layers.make_conv_transpose(
        self.conv_impl, f, (3, 3), strides=(s, s), padding='SAME', kernel_init=KERAS_INIT,
        dtype=self.dtype, name=name)
    x = nn.relu(convt(64, 4, 'convt1')(x))
    x = nn.relu(convt(32, 2, 'convt2')(x))
    return convt(1, 1, 'convt3')(x)


class Autoencoder(nn.Module):
  """The seed autoencoder: noisy [B, 64, 64, 1] -> denoised [B, 64, 64, 1]."""
  latent_dim: int = 64
  dtype: Any = jnp.float32
  bn_axis_name: Optional[str] = None
  conv_impl: str = 'auto'

  def setup(self):
    self.encoder = Encoder(self.latent_dim, dtype=self.dtype,
                           bn_axis_name=self.bn_axis_name,
                           conv_impl=self.conv_impl)
    self.decoder = Decoder(dtype=self.dtype, conv_impl=self.conv_impl)

  def __call__(self, x, *, train: bool = False):
    return self.decoder(self.encoder(x, train=train)).astype(jnp.float32)
