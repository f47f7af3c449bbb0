"""Pure Flax denoisers, one registry of them, and `create_model(config)`.

`config.model` holds the model's `name`, the compute `dtype`, the
convolution implementation `conv_impl` (see `layers.use_fast`) and nothing
else but that model's own fields, which go to its constructor as they are
(`Model(**fields)`, as big_vision does). Each registered model declares
what it takes (`ModelSpec`): the input size it needs, the multiple its
input sizes are padded to, whether it computes an image inside a larger
input, and the noise inputs it is told (`conditioning.Conditioning`). For
a whole config, `capabilities(config)` gathers them with what training
decided (pixel shuffle, the X-ray law); inference reads those.
"""

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors
from xdn.models.autoencoder import SEED_SIZE, Autoencoder
from xdn.models import conditioning as conditioning_lib
from xdn.models import layers
from xdn.models import pixel_shuffle
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
  # fields): one compiled program then serves many sizes
  # (xdn.inference.size_buckets).
  takes_valid: Callable[[Dict[str, Any]], bool] = lambda fields: False
  # The noise inputs it is told (from its fields): `conditioning`.
  conditioning: Callable[[Dict[str, Any]], conditioning_lib.Conditioning] = (
      lambda fields: conditioning_lib.NONE)

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
                                               fields.get('up', UNet.up)),
        conditioning_lib.Conditioning.from_fields),
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
  """Input channels a model takes besides the image: its noise maps
  (`xdn.models.conditioning`)."""
  return get_spec(config.model.name).conditioning(
      config.model.to_dict()).channels


def takes_valid(config: ml_collections.ConfigDict) -> bool:
  """Whether the model takes a valid region inside a larger input."""
  return get_spec(config.model.name).takes_valid(config.model.to_dict())


@dataclasses.dataclass(frozen=True)
class Capabilities:
  """What a trained model takes and needs, from its registry entry and its
  config (`capabilities`). The inference path reads these and nothing
  else; a stand-in callable images -> images without them is PLAIN."""
  # The square size it needs (the seed models), or None for any size.
  fixed_size: Optional[int] = None
  # Tiles start at multiples of this, so that strided convolutions see the
  # same pixel grid in every tile: the padding multiple times the pixel
  # shuffle's stride.
  size_multiple: int = 1
  # Computes an image inside a larger input exactly (a size bucket).
  takes_valid: bool = False
  # The noise inputs it is told (`xdn.models.conditioning`).
  told: conditioning_lib.Conditioning = conditioning_lib.NONE
  # Trained told X-ray noise's own law (config `noise.xray_law_fraction`).
  takes_xray_law: bool = False
  # Applied to pixel-shuffled sub-images at this stride (1: not shuffled;
  # `pixel_shuffle.inference_stride`).
  pixel_shuffle: int = 1

  @property
  def takes_noise_map(self) -> bool:
    """Whether the model is told the noise (and so can be given a strength)."""
    return self.told.noise_map

  @property
  def takes_correlation(self) -> bool:
    """Whether the model is told the noise's spatial correlation."""
    return self.told.channels >= 2


PLAIN = Capabilities()  # Any size, told nothing but the image.


def capabilities(config: ml_collections.ConfigDict) -> Capabilities:
  """What the model of a (training or exported) config takes."""
  spec = get_spec(config.model.name)
  fields = config.model.to_dict()
  told = spec.conditioning(fields)
  stride = pixel_shuffle.inference_stride(config)
  return Capabilities(
      fixed_size=spec.input_size,
      size_multiple=spec.size_multiple(fields) * stride,
      takes_valid=(spec.input_size is None and spec.takes_valid(fields) and
                   stride == 1),
      told=told,
      takes_xray_law=told.noise_map and (
          config.get('noise', {}).get('xray_law_fraction', 0.0) > 0),
      pixel_shuffle=stride)


def capabilities_of(model: Any) -> Capabilities:
  """The capabilities a model object declares (`xdn.inference.Denoiser`
  does); any other callable images -> images (a test's stand-in, a
  baseline) is PLAIN."""
  return getattr(model, 'capabilities', PLAIN)


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
           'takes_valid', 'noise_channels', 'Capabilities',
           'PLAIN', 'capabilities', 'capabilities_of',
           'model_config', 'model_fields', 'restore_model_config']
