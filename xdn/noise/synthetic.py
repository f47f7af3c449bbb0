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
  correlated_gaussian
                    pixel std sigma on the 0-255 scale, with the neighbour
                    correlation `correlation` (0 = white; see
                    `xdn.noise.physics`): a detector's blurred noise.
  xray              quanta per pixel unattenuated (N0) of a simulation in
                    the transmission domain (`xdn.noise.physics`), with the
                    detector correlation `correlation` and electronic noise
                    `electronic_noise` counts.

Differences from the original notebooks, on purpose: they added Gaussian
noise to uint8 arrays without clipping, so values wrapped around (255 + 3
became 2), and saved the noisy images as JPEG, adding compression artefacts.
Here noise is added in float32 and, by default (`clip=True`), clipped to
[0, 1] as a saturating detector would; nothing is re-encoded.
"""

from typing import Callable, Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors
from xdn.noise import physics as noise_physics

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
    'none': no_noise,
    # New kinds go last, so the others keep their index (the noise keys of
    # xdn.evaluation.settings).
    'correlated_gaussian': noise_physics.add_correlated_gaussian_noise,
    'xray': noise_physics.add_xray_noise,
}
# Kinds whose noise is spatially correlated (they take a `correlation`).
CORRELATED_KINDS = ('correlated_gaussian', 'xray')

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


def kind_variance_law(kind: str, level: Level,
                      read_noise: Level = DEFAULT_READ_NOISE
                      ) -> Tuple[Array, Array]:
  """(a, b) of noise `kind` at `level`: variance a * x + b at intensity x
  in [0, 1].

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


def noise_std_map(noisy: Array, a: Level, b: Level,
                  xray_dose: Optional[Level] = None,
                  electronic: Level = noise_physics.DEFAULT_ELECTRONIC_NOISE
                  ) -> Array:
  """Per-pixel noise std, x a 5x5 local mean of `noisy` ([B, H, W, 1]).

  The variance is a * x + b (the Poisson-Gaussian law), plus, where
  `xray_dose` N0 > 0, X-ray quantum noise's own law through the log
  transform, `noise_physics.xray_variance(x, N0, electronic)`: exponential
  in x, which no line fits over a radiograph's range. `a`, `b` and
  `xray_dose` are scalars or one per image. The local mean stands in for
  the unknown clean intensity, in training and at inference alike, so the
  map a model sees is computed the same way.
  """
  a, b = _per_image(a, noisy), _per_image(b, noisy)
  # Edge-replicated borders: the window is full everywhere (a count map of
  # zero-padded windows would be constant-folded slowly by XLA).
  padded = jnp.pad(noisy, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='edge')
  mean = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (1, 5, 5, 1),
                               (1, 1, 1, 1), 'VALID') / 25.0
  mean = jnp.clip(mean, 0.0, 1.0)
  var = a * mean + b
  if xray_dose is not None:
    dose = _per_image(xray_dose, noisy)
    on = dose > 0
    var = var + jnp.where(on, noise_physics.xray_variance(
        mean, jnp.where(on, dose, 1.0), _per_image(electronic, noisy)), 0.0)
  return jnp.sqrt(jnp.maximum(var, 0.0))


def with_noise_map(noisy: Array, a: Level, b: Level,
                   correlation: Optional[Level] = None, *,
                   xray_dose: Optional[Level] = None,
                   scale: Optional[Level] = None,
                   strength: Optional[Level] = None) -> Array:
  """[B, H, W, 1] noisy images -> [B, H, W, 2]: image, noise std map.

  Given a `correlation` (the noise's neighbour correlation, a scalar or
  one per image) a third channel follows: correlation * std map. Scaling
  the map keeps a bias-free network positively homogeneous (scaling the
  image and its noise scales the output), and white noise gives a zero
  channel, so a model widened from a two-channel one starts as it was.
  `xray_dose`: see `noise_std_map`. `scale` multiplies the noise a model
  is told (both maps): the denoising strength (`xdn.inference.strength`)
  of models without a strength map, 1 = the noise as it is. `strength`
  (models with `model.strength_map`) appends (1 - strength) * std map, 0
  at full.
  """
  std = noise_std_map(noisy, a, b, xray_dose)
  if scale is not None:
    std = std * _per_image(scale, noisy)
  channels = [noisy, std]
  if correlation is not None:
    channels.append(_per_image(correlation, noisy) * std)
  if strength is not None:
    channels.append((1.0 - _per_image(strength, noisy)) * std)
  return jnp.concatenate(channels, axis=-1)


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
              read_noise: Level = DEFAULT_READ_NOISE,
              correlation: Level = 0.0,
              electronic_noise: Level = noise_physics.DEFAULT_ELECTRONIC_NOISE
              ) -> Array:
  """Applies noise `kind` (a name in NOISE_KINDS) at `level`.

  `correlation` (neighbour correlation) is used by CORRELATED_KINDS only,
  `electronic_noise` (counts) by 'xray', `read_noise` by poisson_gaussian.
  """
  fn = NOISE_KINDS[kind]
  if kind == 'poisson_gaussian':
    noisy = fn(key, images, level, read_noise=read_noise)
  elif kind == 'correlated_gaussian':
    noisy = fn(key, images, level, _per_image(correlation, images))
  elif kind == 'xray':
    noisy = fn(key, images, level, _per_image(correlation, images),
               electronic=_per_image(electronic_noise, images))
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
  for field in ('dose', 'xray_dose'):
    lo = noise_config.get(f'min_{field}', 0)
    hi = noise_config.get(f'max_{field}', 0)
    if hi > 0 and not 0 < lo <= hi:
      raise errors.UserError(f'noise.min_{field} must be in (0, '
                             f'noise.max_{field}]; got {lo} and {hi}')
  top = noise_physics.MAX_CORRELATION
  for field in ('correlation', 'min_correlation', 'max_correlation'):
    value = noise_config.get(field, 0.0)
    if not 0 <= value <= top:
      raise errors.UserError(f'noise.{field} must be in [0, {top}] (the '
                             f'neighbour correlation), got {value}')
  if noise_config.get('min_correlation', 0) > noise_config.get(
      'max_correlation', 0) > 0:
    raise errors.UserError('noise.max_correlation must be >= '
                           'noise.min_correlation')
  if noise_config.get('electronic_noise', 0) < 0:
    raise errors.UserError('noise.electronic_noise must be >= 0 (counts)')
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
                        train: bool
                        ) -> Tuple[Array, Array, Array, Array, Array]:
  """`corrupt`, also returning each image's noise description.

  Returns (noisy, a, b, correlation, xray_dose), each [B] but the first:
  the variance law var = a * x + b of `kind_variance_law` (zeros for kinds
  without one), the neighbour correlation of the noise (0 for white kinds)
  and, for 'xray', N0 where the model is told the X-ray law itself (see
  `noise_std_map`; else 0). An 'xray' image is told its own law with
  probability `noise.xray_law_fraction` in training (always in
  evaluation when that is > 0), else the line closest to it over the clean
  image (what an affine fit to the image finds).

  Training with several `noise.train_kinds` draws one kind per image; a
  Poisson kind draws its dose log-uniformly from [min_dose, max_dose] and,
  if `max_read_noise` > 0, a read noise from [0, max_read_noise]; 'xray'
  its dose log-uniformly from [min_xray_dose, max_xray_dose]; correlated
  kinds their correlation from [min_correlation, max_correlation].
  """
  kind, level = resolve(noise_config.kind, noise_config.level)
  batch = images.shape[0]
  full = lambda v: jnp.full((batch,), v, jnp.float32)
  read_noise = full(noise_config.read_noise)
  correlation = full(noise_config.get('correlation', 0.0))
  electronic = full(noise_config.get('electronic_noise',
                                     noise_physics.DEFAULT_ELECTRONIC_NOISE))
  clip = noise_config.clip
  law_fraction = noise_config.get('xray_law_fraction', 0.0)
  if not train:
    return _apply_kind(key, images, kind, full(level), read_noise,
                       correlation, electronic, clip,
                       jnp.full((batch,), law_fraction > 0))
  kinds = train_kinds(noise_config)
  ranged = (noise_config.get('max_dose', 0) > 0 or
            noise_config.get('max_read_noise', 0) > 0)
  if len(kinds) == 1 and not ranged and kinds[0] not in CORRELATED_KINDS:
    # One kind: the keys as xdn has always drawn them, so a run resumed
    # across versions sees the same noise.
    level = full(level)
    if is_blind(noise_config):
      level_key, key = jax.random.split(key)
      level = jax.random.uniform(level_key, (batch,), jnp.float32,
                                 noise_config.min_level,
                                 noise_config.max_level)
    return _apply_kind(key, images, kinds[0], level, read_noise, correlation,
                       electronic, clip, jnp.zeros((batch,), bool))
  kind_key, level_key, dose_key, read_key, key = jax.random.split(key, 5)
  which = jax.random.randint(kind_key, (batch,), 0, len(kinds))
  level = full(level)
  if is_blind(noise_config):
    level = jax.random.uniform(level_key, (batch,), jnp.float32,
                               noise_config.min_level, noise_config.max_level)
  log_uniform = lambda k, lo, hi: jnp.exp(jax.random.uniform(
      k, (batch,), jnp.float32, jnp.log(lo), jnp.log(hi)))
  if noise_config.get('max_dose', 0) > 0:
    dose = log_uniform(dose_key, noise_config.min_dose, noise_config.max_dose)
  else:
    dose = level
  if noise_config.get('max_read_noise', 0) > 0:
    read_noise = jax.random.uniform(read_key, (batch,), jnp.float32, 0.0,
                                    noise_config.max_read_noise)
  extra_keys = jax.random.split(jax.random.fold_in(key, 7), 2)
  if noise_config.get('max_xray_dose', 0) > 0:
    xray_dose = log_uniform(extra_keys[0], noise_config.min_xray_dose,
                            noise_config.max_xray_dose)
  else:
    xray_dose = dose
  if noise_config.get('max_correlation', 0) > 0:
    correlation = jax.random.uniform(
        extra_keys[1], (batch,), jnp.float32,
        noise_config.get('min_correlation', 0.0),
        noise_config.max_correlation)
  def level_of(k):
    if k == 'xray':
      return xray_dose
    return dose if k.startswith('poisson') else level
  # Its own key: the other draws stay as they were without it.
  law = jax.random.uniform(jax.random.fold_in(key, 11), (batch,)) < law_fraction
  results = [_apply_kind(key, images, k, level_of(k), read_noise, correlation,
                         electronic, clip, law) for k in kinds]
  rows = jnp.arange(batch)
  return tuple(jnp.stack(parts)[which, rows] for parts in zip(*results))


def _apply_kind(key: Array, images: Array, kind: str, level: Array,
                read_noise: Array, correlation: Array, electronic: Array,
                clip: bool, xray_law: Array
                ) -> Tuple[Array, Array, Array, Array, Array]:
  noisy = add_noise(key, images, kind, level, clip=clip,
                    read_noise=_per_image(read_noise, images),
                    correlation=correlation, electronic_noise=electronic)
  zeros = jnp.zeros_like(level)
  dose = zeros
  if kind in AFFINE_KINDS:
    a, b = kind_variance_law(kind, level, read_noise)
  elif kind == 'xray':
    a, b = noise_physics.xray_affine_params(images, level, electronic)
    a, b = jnp.where(xray_law, 0.0, a), jnp.where(xray_law, 0.0, b)
    dose = jnp.where(xray_law & (level > 0), level, 0.0)
  elif kind == 'correlated_gaussian':
    a, b = kind_variance_law('gaussian', level)
  else:
    a = b = zeros
  rho = correlation if kind in CORRELATED_KINDS else zeros
  return noisy, a, b, jnp.where(level > 0, rho, 0.0), dose
