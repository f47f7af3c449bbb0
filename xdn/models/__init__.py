"""Pure Flax denoisers and `create_model(config)`, the one place they are built."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xdn.models.autoencoder import SEED_SIZE, Autoencoder
from xdn.models.skip import SeedSkipAutoencoder
from xdn.models.unet import UNet
from xdn.models.vae import VAE, VAEOutput

MODELS = ('autoencoder', 'vae', 'seed_skip', 'unet')
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict, *,
                 bn_axis_name: Optional[str] = None) -> nn.Module:
  """Builds the model named by `config.model.name` from the config.

  `bn_axis_name`: the pmap axis over which BatchNorm averages its batch
  statistics during training (None outside pmap).
  """
  mc = config.model
  if mc.dtype not in _DTYPES:
    raise ValueError(f'unknown model.dtype {mc.dtype!r}; use one of '
                     f'{sorted(_DTYPES)}')
  dtype = _DTYPES[mc.dtype]
  if mc.name == 'autoencoder':
    return Autoencoder(latent_dim=mc.latent_dim, dtype=dtype,
                       bn_axis_name=bn_axis_name)
  if mc.name == 'vae':
    return VAE(latent_dim=mc.latent_dim, dtype=dtype,
               bn_axis_name=bn_axis_name)
  if mc.name == 'seed_skip':
    return SeedSkipAutoencoder(dtype=dtype)
  if mc.name == 'unet':
    return UNet(depth=mc.depth, base_width=mc.base_width, norm=mc.norm,
                down=mc.down, up=mc.up, residual=mc.residual,
                use_bias=mc.get('use_bias', True),
                noise_map=mc.get('noise_map', False), dtype=dtype,
                bn_axis_name=bn_axis_name)
  raise ValueError(f'unknown model.name {mc.name!r}; use one of {MODELS}')


def fixed_input_size(config: ml_collections.ConfigDict) -> Optional[int]:
  """The square size a model needs, or None if it takes any size."""
  return None if config.model.name == 'unet' else SEED_SIZE


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a clear error when the image size does not suit the model."""
  if config.model.name not in MODELS:
    raise ValueError(f'unknown model.name {config.model.name!r}; use one of '
                     f'{MODELS}')
  size = fixed_input_size(config)
  if size is not None and config.data.image_size != size:
    raise ValueError(
        f'model {config.model.name!r} takes {size}x{size} images but '
        f'data.image_size={config.data.image_size}; set '
        f'--config.data.image_size={size} or use model.name=unet')
  if config.model.name == 'unet' and config.model.depth < 1:
    raise ValueError('model.depth must be >= 1')


def denoised_image(output) -> jax.Array:
  """The denoised image in [0, 1]-scale from a model's output."""
  if isinstance(output, VAEOutput):
    return nn.sigmoid(output.logits)
  return output


__all__ = ['Autoencoder', 'VAE', 'VAEOutput', 'SeedSkipAutoencoder', 'UNet',
           'MODELS', 'create_model', 'check_config', 'denoised_image',
           'fixed_input_size']
