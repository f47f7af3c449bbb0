"""The seed's autoencoder with additive skip connections (64x64x1).

Faithful to the original `residual_network.py` (ResidualAutoencoder_V2_64):
five SAME convolutions down to 4x4x518 (518 channels, as in the original),
four transposed convolutions back up, each followed by the addition of the
encoder feature map of the same size, and a final 64x64 transposed
convolution with one linear output channel; 12,634,631 parameters
(tests/models_test.py counts them).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xdn.models.autoencoder import KERAS_INIT
from xdn.models import layers

# (features, kernel, stride) of the encoder convolutions.
_ENCODER = ((64, 4, 1), (64, 8, 2), (128, 8, 2), (256, 8, 2), (518, 4, 2))
# (features, kernel) of the decoder's stride-2 transposed convolutions.
_DECODER = ((256, 4), (128, 8), (64, 16), (64, 16))


class SeedSkipAutoencoder(nn.Module):
  """Noisy [B, 64, 64, 1] -> denoised [B, 64, 64, 1]."""
  dtype: Any = jnp.float32
  conv_impl: str = 'auto'  # See layers.use_fast.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # No BatchNorm or dropout in the seed model.
    skips = []
    for i, (f, k, s) in enumerate(_ENCODER):
      x = nn.relu(layers.make_conv(
          self.conv_impl, f, (k, k), strides=(s, s), padding='SAME',
          kernel_init=KERAS_INIT, dtype=self.dtype, name=f'enc{i + 1}')(x))
      skips.append(x)
    # Skips at 8x8 (enc4), 16x16 (enc3), 32x32 (enc2), 64x64 (enc1).
    for i, ((f, k), skip) in enumerate(zip(_DECODER, skips[-2::-1])):
      x = nn.relu(layers.make_conv_transpose(
          self.conv_impl, f, (k, k), strides=(2, 2), padding='SAME', kernel_init=KERAS_INIT,
          dtype=self.dtype, name=f'dec{i + 1}')(x))
      x = x + skip
    x = layers.make_conv_transpose(
        self.conv_impl, 1, (64, 64), strides=(1, 1), padding='SAME',
        kernel_init=KERAS_INIT, dtype=self.dtype, name='out')(x)
    return x.astype(jnp.float32)
