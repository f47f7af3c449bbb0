"""Corruption models for radiographs.

Every function is pure and jit-able: `(key, images, level) -> noisy`, with
images in [0, 1] shaped [B, H, W, 1] and `level` a scalar or one value per
image ([B]). A level of 0 (or below) leaves an image untouched for every
kind, so blind ranges such as [0, 55] include clean images.

Units of `level`, per kind:
  gaussian          sigma on the 0-255 scale (15, 25, 50 are the usual tiers).
  poisson           photons at full intensity (dose): a pixel of intensity x
                    counts Poisson(x * level) photons; lower dose, more noise.
  poisson_gaussian  as poisson, plus detector read noise of sigma
                    `read_noise` on the 0-255 scale: the usual low-dose
                    X-ray model.
  salt_and_pepper   fraction of pixels replaced, half by 1 (salt), half by 0.
  speckle           std of the multiplicative factor: x * (1 + level * n).
  none              no noise (level ignored): the images already are noisy,
                    e.g. a user's radiographs for self-supervised training.

Differences from the original notebooks, on purpose: they added Gaussian
noise to uint8 arrays without clipping, so values wrapped around (255 + 3
became 2), and saved the noisy images as JPEG, adding compression artefacts.
Here noise is added in float32 and, by default (`clip=True`), clipped to
[0, 1] as a saturating detector would; nothing is re-encoded.
"""

from typing import Callable, Dict, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors

Array = jax.Array
Level = Union[float, Array]

# Detector read-noise sigma (0-255 scale) of 'poisson_gaussian' when none is
# given: the one default every command and config uses.
DEFAULT_READ_NOISE = 2.0


def _per_image(level: Level, images: Array) -> Array:
  """Broadcasts a scalar or [B] level against [B, H, W, C] images."""
  level = jnp.asarray(level, dtype=images.dtype)
  if level.ndim == 0:
    return level
  return level.reshape((-1,) + (1,) * (images.ndim - 1))


def add_gaussian_noise(key: Array, images: Array, sigma: Level) -> Array:
  """Additive white Gaussian noise; `sigma` on the 0-255 scale."""
  sigma = jnp.maximum(_per_image(sigma, images), 0) / 255.0
  return images + sigma * jax.random.normal(key, images.shape, images.dtype)


def add_poisson_noise(key: Array, images: Array, dose: Level) -> Array:
  """Shot noise: Poisson photon counts at `dose` photons per unit intensity."""
  dose = _per_image(dose, images)
  safe_dose = jnp.where(dose > 0, dose, 1.0)
  counts = jax.random.poisson(key, jnp.clip(images, 0, None) * safe_dose)
  noisy = counts.astype(images.dtype) / safe_dose
  return jnp.where(dose > 0, noisy, images)


def add_poisson_gaussian_noise(key: Array, images: Array, dose: Level,
                               read_noise: float = DEFAULT_READ_NOISE) -> Array:
  """Shot noise at `dose` plus Gaussian read noise (sigma on 0-255 scale)."""
  shot_key, read_key = jax.random.split(key)
  noisy = add_poisson_noise(shot_key, images, dose)
  read = add_gaussian_noise(read_key, jnp.zeros_like(images), read_noise)
  return noisy + jnp.where(_per_image(dose, images) > 0, read, 0.0)


def add_salt_and_pepper_noise(key: Array, images: Array,
                              fraction: Level) -> Array:
  """Replaces `fraction` of the pixels, half with 1 (salt), half with 0."""
  fraction = jnp.clip(_per_image(fraction, images), 0.0, 1.0)
  u = jax.random.uniform(key, images.shape, images.dtype)
  noisy = jnp.where(u < fraction / 2, 0.0, images)
  return jnp.where((u >= fraction / 2) & (u < fraction), 1.0, noisy)


def add_speckle_noise(key: Array, images: Array, sigma: Level) -> Array:
  """Multiplicative Gaussian noise: images * (1 + sigma * n)."""
  sigma = jnp.maximum(_per_image(sigma, images), 0)
  return images * (1 + sigma * jax.random.normal(key, images.shape,
                                                 images.dtype))


def no_noise(key: Array, images: Array, level: Level) -> Array:
  """The images as they are: for data that hold their own noise."""
  del key, level
  return images


NOISE_KINDS: Dict[str, Callable[..., Array]] = {
    'gaussian': add_gaussian_noise,
    'poisson': add_poisson_noise,
    'poisson_gaussian': add_poisson_gaussian_noise,
    'salt_and_pepper': add_salt_and_pepper_noise,
    'speckle': add_speckle_noise,
    # Last, so the other kinds keep their index (xdn.evaluate's noise keys).
    'none': no_noise,
}

# The seed notebooks' tiers. Gaussian: p * 255 * sqrt(var) with p = 0.2 and
# var = 0.1 / 0.2 / 0.5, i.e. sigma 16.1 / 22.8 / 36.1 on the 0-255 scale.
PRESETS: Dict[str, Tuple[str, float]] = {
    'gaussian_easy': ('gaussian', 0.2 * 255 * 0.1**0.5),
    'gaussian_medium': ('gaussian', 0.2 * 255 * 0.2**0.5),
    'gaussian_hard': ('gaussian', 0.2 * 255 * 0.5**0.5),
    'salt_and_pepper_easy': ('salt_and_pepper', 0.03),
    'salt_and_pepper_medium': ('salt_and_pepper', 0.10),
    'salt_and_pepper_hard': ('salt_and_pepper', 0.25),
}


# Kinds whose variance is affine in the clean intensity x:
# var = a * x + b on the [0, 1] scale. A noise-level map for them is exact.
AFFINE_KINDS = ('gaussian', 'poisson', 'poisson_gaussian')


def variance_params(kind: str, level: Level,
                    read_noise: Level = DEFAULT_READ_NOISE
                    ) -> Tuple[Array, Array]:
  """(a, b) with noise variance a * x + b at intensity x in [0, 1].

  gaussian: a = 0, b = (sigma / 255)^2; poisson at dose d: a = 1 / d, b = 0;
  poisson_gaussian adds the read noise: b = (read_noise / 255)^2. A level of
  0 (no noise) gives a = b = 0.
  """
  level = jnp.asarray(level, jnp.float32)
  if kind == 'gaussian':
    return jnp.zeros_like(level), (jnp.maximum(level, 0) / 255.0)**2
  if kind in ('poisson', 'poisson_gaussian'):
    on = level > 0
    a = jnp.where(on, 1.0 / jnp.where(on, level, 1.0), 0.0)
    if kind == 'poisson':
      return a, jnp.zeros_like(level)
    read = jnp.asarray(read_noise, jnp.float32)
    return a, jnp.where(on, (read / 255.0)**2, 0.0)
  raise errors.UserError(f'noise kind {kind!r} has no noise-level map; use '
                         f'one of {AFFINE_KINDS}')


def noise_std_map(noisy: Array, a: Level, b: Level) -> Array:
  """Per-pixel noise std sqrt(a * x + b), x a 5x5 local mean of `noisy`.

  `noisy` is [B, H, W, 1] in [0, 1]; `a` and `b` scalars or one per image.
  The local mean stands in for the unknown clean intensity, in training and
  at inference alike, so the map a model sees is computed the same way.
  """
  a, b = _per_image(a, noisy), _per_image(b, noisy)
  # Edge-replicated borders: the window is full everywhere (a count map of
  # zero-padded windows would be constant-folded slowly by XLA).
  padded = jnp.pad(noisy, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='edge')
  mean = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (1, 5, 5, 1),
                               (1, 1, 1, 1), 'VALID') / 25.0
  mean = jnp.clip(mean, 0.0, 1.0)
  return jnp.sqrt(jnp.maximum(a * mean + b, 0.0))


def with_noise_map(noisy: Array, a: Level, b: Level) -> Array:
  """[B, H, W, 1] noisy images -> [B, H, W, 2]: image, noise std map."""
  return jnp.concatenate([noisy, noise_std_map(noisy, a, b)], axis=-1)


def resolve(kind: str, level: float) -> Tuple[str, float]:
  """Maps a kind or preset name to (kind, level); checks both."""
  if kind in PRESETS:
    return PRESETS[kind]
  if kind not in NOISE_KINDS:
    raise errors.UserError(
        f'unknown noise kind {kind!r}; use one of '
        f'{sorted(NOISE_KINDS) + sorted(PRESETS)} (config field noise.kind)')
  if level < 0:
    raise errors.UserError(f'noise level must be >= 0, got {level} '
                           '(config field noise.level)')
  return kind, float(level)


def add_noise(key: Array, images: Array, kind: str, level: Level, *,
              clip: bool = True,
              read_noise: float = DEFAULT_READ_NOISE) -> Array:
  """Applies noise `kind` (a name in NOISE_KINDS) at `level`."""
  fn = NOISE_KINDS[kind]
  if kind == 'poisson_gaussian':
    noisy = fn(key, images, level, read_noise=read_noise)
  else:
    noisy = fn(key, images, level)
  return jnp.clip(noisy, 0.0, 1.0) if clip else noisy


def train_kinds(noise_config: ml_collections.ConfigDict) -> Tuple[str, ...]:
  """The kinds training draws from: `noise.train_kinds`, else `noise.kind`."""
  kinds = noise_config.get('train_kinds', '')
  if not kinds:
    return (resolve(noise_config.kind, noise_config.level)[0],)
  return tuple(k.strip() for k in kinds.split(',') if k.strip())


def check_config(noise_config: ml_collections.ConfigDict) -> None:
  """Raises a clear error for a bad `config.noise`."""
  resolve(noise_config.kind, noise_config.level)
  for kind in train_kinds(noise_config):
    if kind not in NOISE_KINDS:
      raise errors.UserError(f'unknown kind {kind!r} in noise.train_kinds; use '
                             f'kinds of {sorted(NOISE_KINDS)}, comma-separated')
  if 0 < noise_config.get('max_dose', 0) < noise_config.get('min_dose', 0):
    raise errors.UserError('noise.max_dose must be >= noise.min_dose')
  if noise_config.get('max_read_noise', 0) < 0:
    raise errors.UserError('noise.max_read_noise must be >= 0')
  if noise_config.min_level < 0 or noise_config.max_level < 0:
    raise errors.UserError('noise.min_level and noise.max_level must be >= 0')
  if 0 < noise_config.max_level < noise_config.min_level:
    raise errors.UserError('noise.max_level must be >= noise.min_level '
                           '(or 0 to train at the fixed noise.level)')


def is_blind(noise_config: ml_collections.ConfigDict) -> bool:
  """Whether training draws a level per image from [min_level, max_level]."""
  return noise_config.max_level > noise_config.min_level


def corrupt(key: Array, images: Array,
            noise_config: ml_collections.ConfigDict, *,
            train: bool) -> Array:
  """Corrupts a batch as `config.noise` says.

  During training with a blind range each image draws its own level; for
  evaluation (`train=False`) the fixed `noise.level` (or preset) is used.
  """
  return corrupt_with_params(key, images, noise_config, train=train)[0]


def corrupt_with_params(key: Array, images: Array,
                        noise_config: ml_collections.ConfigDict, *,
                        train: bool) -> Tuple[Array, Array, Array]:
  """`corrupt`, also returning the variance parameters (a, b) per image.

  Training with several `noise.train_kinds` draws one kind per image; a
  Poisson kind draws its dose log-uniformly from [min_dose, max_dose] and,
  if `max_read_noise` > 0, a read noise from [0, max_read_noise]. (a, b)
  are those of `variance_params` ([B] each), zeros for kinds without them.
  """
  kind, level = resolve(noise_config.kind, noise_config.level)
  batch = images.shape[0]
  read_noise = jnp.full((batch,), noise_config.read_noise, jnp.float32)
  if not train:
    return _apply_kind(key, images, kind, jnp.full((batch,), level),
                       read_noise, noise_config.clip)
  kinds = train_kinds(noise_config)
  ranged = (noise_config.get('max_dose', 0) > 0 or
            noise_config.get('max_read_noise', 0) > 0)
  if len(kinds) == 1 and not ranged:
    # One kind: the keys as xdn has always drawn them, so a run resumed
    # across versions sees the same noise.
    level = jnp.full((batch,), level, jnp.float32)
    if is_blind(noise_config):
      level_key, key = jax.random.split(key)
      level = jax.random.uniform(level_key, (batch,), jnp.float32,
                                 noise_config.min_level,
                                 noise_config.max_level)
    return _apply_kind(key, images, kinds[0], level, read_noise,
                       noise_config.clip)
  kind_key, level_key, dose_key, read_key, key = jax.random.split(key, 5)
  which = jax.random.randint(kind_key, (batch,), 0, len(kinds))
  level = jnp.full((batch,), level, jnp.float32)
  if is_blind(noise_config):
    level = jax.random.uniform(level_key, (batch,), jnp.float32,
                               noise_config.min_level, noise_config.max_level)
  if noise_config.get('max_dose', 0) > 0:
    lo, hi = jnp.log(noise_config.min_dose), jnp.log(noise_config.max_dose)
    dose = jnp.exp(jax.random.uniform(dose_key, (batch,), jnp.float32, lo, hi))
  else:
    dose = level
  if noise_config.get('max_read_noise', 0) > 0:
    read_noise = jax.random.uniform(read_key, (batch,), jnp.float32, 0.0,
                                    noise_config.max_read_noise)
  results = [_apply_kind(key, images, k,
                         dose if k.startswith('poisson') else level,
                         read_noise, noise_config.clip) for k in kinds]
  rows = jnp.arange(batch)
  noisy = jnp.stack([r[0] for r in results])[which, rows]
  a = jnp.stack([r[1] for r in results])[which, rows]
  b = jnp.stack([r[2] for r in results])[which, rows]
  return noisy, a, b


def _apply_kind(key: Array, images: Array, kind: str, level: Array,
                read_noise: Array, clip: bool) -> Tuple[Array, Array, Array]:
  if kind == 'poisson_gaussian':
    fn = NOISE_KINDS[kind]
    noisy = fn(key, images, level, read_noise=_per_image(read_noise, images))
    noisy = jnp.clip(noisy, 0.0, 1.0) if clip else noisy
  else:
    noisy = add_noise(key, images, kind, level, clip=clip)
  if kind in AFFINE_KINDS:
    a, b = variance_params(kind, level, read_noise)
  else:
    a = b = jnp.zeros_like(level)
  return noisy, a, b
