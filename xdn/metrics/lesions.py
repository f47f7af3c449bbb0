"""Synthetic lesions: faint round or elongated blobs added to radiographs.

Lesions are added in the *display* domain: a lesion of peak contrast c adds
c * profile to the [0, 1] image (a nodule, denser than the lung around it,
is brighter on a radiograph, hence positive polarity by default). For the
small contrasts used here (<= 5 % of the range) this equals an insertion
in the log (line-integral) domain up to the display's gamma; documented
so that results can be compared with other insertion codes.

Profiles (`profile`): 'gaussian' exp(-r^2 / 2), or 'flat' (a flat top with
a smooth edge: a solid nodule), r the distance in units of `size` (the
Gaussian std, in pixels) after stretching one axis by `aspect` >= 1 at
angle `angle` (elongated lesions: vessels seen end-on are round, scars
and atelectasis are not).

`insert_random_lesions` is the training augmentation (jit-able, one key);
`place_sites` and `lesion_image` serve the task-based evaluation
(`xdn.metrics.observers`), in numpy.
"""

from typing import List, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn import errors

Array = jax.Array

PROFILES = ('gaussian', 'flat')


def _profile(r2: Array, flat: Array):
  """Peak-1 profiles of squared normalised radius r2."""
  gauss = jnp.exp(-0.5 * r2)
  # Flat top to r = 1.5, then a Gaussian shoulder of width 0.5.
  r = jnp.sqrt(r2)
  top = jnp.exp(-0.5 * (jnp.maximum(r - 1.5, 0.0) / 0.5)**2)
  return jnp.where(flat, top, gauss)


def lesion_map(shape: Tuple[int, int], cy: Array, cx: Array, size: Array,
               aspect: Array, angle: Array, flat: Array) -> Array:
  """[H, W] peak-1 profile of one lesion centred at (cy, cx) pixels."""
  yy, xx = jnp.meshgrid(jnp.arange(shape[0], dtype=jnp.float32),
                        jnp.arange(shape[1], dtype=jnp.float32),
                        indexing='ij')
  dy, dx = yy - cy, xx - cx
  c, s = jnp.cos(angle), jnp.sin(angle)
  u = (c * dx + s * dy) / (size * aspect)
  v = (-s * dx + c * dy) / size
  return _profile(u**2 + v**2, flat)


def insert_random_lesions(key: Array, images: Array,
                          config: ml_collections.ConfigDict) -> Array:
  """Adds one random lesion to a `config.rate` fraction of [B, H, W, 1].

  Size log-uniform in [min_size, max_size] px, contrast log-uniform in
  [min_contrast, max_contrast], aspect 1-3, a quarter of them flat-topped,
  `positive_fraction` brighter than the background. The result is clipped
  to [0, 1] like every clean image.
  """
  b, h, w, _ = images.shape
  keys = jax.random.split(key, 8)
  u = lambda k, lo=0.0, hi=1.0: jax.random.uniform(k, (b,), jnp.float32, lo,
                                                    hi)
  log_u = lambda k, lo, hi: jnp.exp(u(k, np.log(lo), np.log(hi)))
  on = u(keys[0]) < config.rate
  size = log_u(keys[1], config.min_size, config.max_size)
  contrast = log_u(keys[2], config.min_contrast, config.max_contrast)
  sign = jnp.where(u(keys[3]) < config.positive_fraction, 1.0, -1.0)
  aspect = jnp.where(u(keys[4]) < 0.5, 1.0, u(keys[5], 1.0, 3.0))
  angle = u(keys[6], 0.0, np.pi)
  flat = u(keys[7]) < 0.25
  centre_keys = jax.random.split(jax.random.fold_in(key, 1), 2)
  cy = u(centre_keys[0], 0.0, h - 1.0)
  cx = u(centre_keys[1], 0.0, w - 1.0)
  maps = jax.vmap(lambda *a: lesion_map((h, w), *a))(cy, cx, size, aspect,
                                                      angle, flat)
  amplitude = jnp.where(on, sign * contrast, 0.0)
  return jnp.clip(images + amplitude[:, None, None, None] * maps[..., None],
                  0.0, 1.0)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a clear error for a bad `config.lesions`."""
  if not 0 <= config.rate <= 1:
    raise errors.UserError(f'lesions.rate must be in [0, 1], got {config.rate}')
  if config.rate == 0:
    return
  for field in ('contrast', 'size'):
    lo, hi = config[f'min_{field}'], config[f'max_{field}']
    if not 0 < lo <= hi:
      raise errors.UserError(f'lesions.min_{field} must be in (0, '
                             f'lesions.max_{field}]; got {lo} and {hi}')
  if not 0 <= config.positive_fraction <= 1:
    raise errors.UserError('lesions.positive_fraction must be in [0, 1]')


# ------------------------------------------------------------ evaluation


def body_mask(image: np.ndarray, margin: int) -> np.ndarray:
  """Where lesions may go: inside the body region, `margin` px from the
  border. The body is what is neither near-black (collimation, air outside
  the patient) nor near-white (labels, burnt-in text, saturation)."""
  image = np.asarray(image, np.float32)
  lo, hi = np.quantile(image, [0.05, 0.995])
  mask = (image > lo + 0.05 * (hi - lo)) & (image < 0.98)
  if margin > 0:  # (mask[-0:] would be all of it.)
    mask[:margin] = mask[-margin:] = False
    mask[:, :margin] = mask[:, -margin:] = False
  return mask


def place_sites(rng: np.random.Generator, mask: np.ndarray, count: int,
                min_distance: float) -> List[Tuple[int, int]]:
  """Up to `count` random sites in `mask`, at least `min_distance` apart."""
  candidates = np.argwhere(mask)
  if len(candidates) == 0:
    return []
  order = rng.permutation(len(candidates))
  sites: List[Tuple[int, int]] = []
  for i in order[:max(50 * count, 1000)]:
    y, x = candidates[i]
    if all((y - sy)**2 + (x - sx)**2 >= min_distance**2 for sy, sx in sites):
      sites.append((int(y), int(x)))
      if len(sites) == count:
        break
  return sites


def lesion_image(shape: Tuple[int, int], sites: Sequence[Tuple[int, int]],
                 size: float, contrast: float, *, profile: str = 'gaussian',
                 aspect: float = 1.0, angle: float = 0.0) -> np.ndarray:
  """[H, W] sum of lesions of peak `contrast` (signed) at `sites`."""
  if profile not in PROFILES:
    raise ValueError(f'unknown lesion profile {profile!r}; use {PROFILES}')
  out = np.zeros(shape, np.float32)
  for cy, cx in sites:
    out += np.asarray(lesion_map(shape, cy, cx, size, aspect, angle,
                                 profile == 'flat'))
  return contrast * out
