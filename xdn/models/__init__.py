"""Pure Flax denoisers, one registry of them, and `create_model(config)`.

`config.model` holds the model's `name`, the compute `dtype`, the
convolution implementation `conv_impl` (see `layers.use_fast`) and nothing
else but that model's own fields, which go to its constructor as they are
(`Model(**fields)`, as big_vision does). Each registered model declares the
input size it needs and the multiple its input sizes are padded to.
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors
from xdn.models import layers
from xdn.models.autoencoder import SEED_SIZE, Autoencoder
from xdn.models.skip import SeedSkipAutoencoder
from xdn.models import unet as unet_lib
from xdn.models.unet import UNet
from xdn.models.vae import VAE, VAEOutput

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Fields of config.model that every model has, besides its own.
COMMON_FIELDS = ('name', 'dtype', 'conv_impl')
# Module fields set by xdn itself, never from the config.
_INTERNAL_FIELDS = ('parent', 'name', 'dtype', 'bn_axis_name', 'conv_impl')


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registered model: its class and how it takes images."""
  cls: type
  # The square size it needs (the seed models), or None for any size.
  input_size: Optional[int]
  # Image sizes are padded to a multiple of this (from the model's fields).
  size_multiple: Callable[[Dict[str, Any]], int] = lambda fields: 1
  # Whether it takes a `valid` region inside a larger input (from its
  # fields): one compiled program then serves many sizes (xdn.inference.size_buckets).
  takes_valid: Callable[[Dict[str, Any]], bool] = lambda fields: False

  def fields(self) -> Dict[str, Any]:
    """The model's own config fields and their defaults."""
    return {f.name: f.default for f in dataclasses.fields(self.cls)
            if f.name not in _INTERNAL_FIELDS and f.init}


REGISTRY: Dict[str, ModelSpec] = {
    'autoencoder': ModelSpec(Autoencoder, SEED_SIZE),
    'vae': ModelSpec(VAE, SEED_SIZE),
    'seed_skip': ModelSpec(SeedSkipAutoencoder, SEED_SIZE),
    'unet': ModelSpec(
        UNet, None, lambda fields: 2**fields.get('depth', UNet.depth),
        lambda fields: unet_lib.supports_valid(fields.get('norm', UNet.norm),
                                               fields.get('up', UNet.up))),
}
MODELS: Tuple[str, ...] = tuple(REGISTRY)


def get_spec(name: str) -> ModelSpec:
  if name not in REGISTRY:
    raise errors.UserError(f'unknown model.name {name!r}; use one of {MODELS}')
  return REGISTRY[name]


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """`config.model` for model `name`: its fields with their defaults."""
  config = ml_collections.ConfigDict(
      {'name': name, 'dtype': 'float32', 'conv_impl': 'auto',
       **get_spec(name).fields()})
  config.update(overrides)
  return config


def model_fields(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """The model's own fields in `config.model` (checked against it)."""
  spec = get_spec(config.model.name)
  given = {k: v for k, v in config.model.items() if k not in COMMON_FIELDS}
  unknown = sorted(set(given) - set(spec.fields()))
  if unknown:
    raise errors.UserError(
        f'model.{unknown[0]} is not a field of model {config.model.name!r} '
        f'(its fields: {sorted(spec.fields())}); start from that model\'s '
        f'config, e.g. --config=configs/{config.model.name}.py')
  return given


def restore_model_config(saved: Dict[str, Any]) -> ml_collections.ConfigDict:
  """`config.model` from a saved config (a run's config.json).

  Configs written before the registry held every model's fields in one
  flat section; the fields of other models are dropped.
  """
  spec = get_spec(saved['name'])
  keep = set(COMMON_FIELDS) | set(spec.fields())
  return ml_collections.ConfigDict(
      {k: v for k, v in saved.items() if k in keep})


def create_model(config: ml_collections.ConfigDict, *,
                 bn_axis_name: Optional[str] = None) -> nn.Module:
  """Builds the model `config.model` names, with its fields.

  `bn_axis_name`: the pmap axis over which BatchNorm averages its batch
  statistics during training (None outside pmap).
  """
  spec = get_spec(config.model.name)
  dtype = config.model.get('dtype', 'float32')
  if dtype not in _DTYPES:
    raise errors.UserError(f'unknown model.dtype {dtype!r}; use one of '
                           f'{sorted(_DTYPES)}')
  conv_impl = config.model.get('conv_impl', 'auto')
  if conv_impl not in layers.IMPLS:
    raise errors.UserError(f'unknown model.conv_impl {conv_impl!r}; use one '
                           f'of {layers.IMPLS}')
  extra = {'dtype': _DTYPES[dtype], 'conv_impl': conv_impl}
  if 'bn_axis_name' in {f.name for f in dataclasses.fields(spec.cls)}:
    extra['bn_axis_name'] = bn_axis_name
  return spec.cls(**model_fields(config), **extra)


def fixed_input_size(config: ml_collections.ConfigDict) -> Optional[int]:
  """The square size a model needs, or None if it takes any size."""
  return get_spec(config.model.name).input_size


def size_multiple(config: ml_collections.ConfigDict) -> int:
  """Input sizes are padded to a multiple of this inside the model."""
  return get_spec(config.model.name).size_multiple(config.model.to_dict())


def noise_channels(config: ml_collections.ConfigDict) -> int:
  """Input channels a model takes besides the image: its noise maps."""
  noise_map = bool(config.model.get('noise_map', False))
  return (int(noise_map) +
          int(noise_map and config.model.get('correlation_map', False)) +
          int(noise_map and config.model.get('strength_map', False)))


def takes_valid(config: ml_collections.ConfigDict) -> bool:
  """Whether the model takes a valid region inside a larger input."""
  return get_spec(config.model.name).takes_valid(config.model.to_dict())


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a clear error when the model or image size is wrong."""
  model_fields(config)
  size = fixed_input_size(config)
  if size is not None and config.data.image_size != size:
    raise errors.UserError(
        f'model {config.model.name!r} takes {size}x{size} images but '
        f'data.image_size={config.data.image_size}; set '
        f'--config.data.image_size={size} or use model.name=unet')
  if config.model.name == 'unet' and config.model.get('depth', 4) < 1:
    raise errors.UserError('model.depth must be >= 1')
  if config.model.get('strength_map', False) and not (
      config.model.get('noise_map', False) and
      config.model.get('correlation_map', False)):
    raise errors.UserError('model.strength_map needs model.noise_map and '
                           'model.correlation_map')


def denoised_image(output) -> jax.Array:
  """The denoised image in [0, 1]-scale from a model's output."""
  if isinstance(output, VAEOutput):
    return nn.sigmoid(output.logits)
  return output


__all__ = ['Autoencoder', 'VAE', 'VAEOutput', 'SeedSkipAutoencoder', 'UNet',
           'MODELS', 'REGISTRY', 'ModelSpec', 'create_model', 'check_config',
           'denoised_image', 'fixed_input_size', 'size_multiple',
           'takes_valid', 'noise_channels',
           'model_config', 'model_fields', 'restore_model_config']
