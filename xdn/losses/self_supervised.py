"""Self-supervised losses: training a denoiser on noisy images alone.

`loss_and_output(apply_fn, noisy, keys, config, ...)` is the one entry point
the train and eval steps call when `config.loss.name` is one of
`SELF_SUPERVISED`; it never needs a clean image:

  noise2self         Blind-spot training (Noise2Self, Batson & Royer, ICML
                     2019; Noise2Void, Krull et al., CVPR 2019). One pixel per
                     s x s cell (s = round(1 / sqrt(loss.mask_density))) is
                     replaced by a value from its `loss.mask_box` neighbourhood
                     (never itself) and the loss counts those pixels only:
                     the network cannot copy a pixel it never sees, and the
                     noise of independent pixels cannot be predicted, so it
                     learns the clean signal. `loss.mask_replace`: 'median'
                     of the neighbours (N2V2, Hoeck et al. 2022, avoids the
                     checkerboard artefacts of 'random'), 'random' neighbour
                     (N2V), or 'mean' of the neighbours (Noise2Self's
                     interpolation).
  neighbor2neighbor  Neighbor2Neighbor (Huang et al., CVPR 2021). In each 2x2
                     cell two adjacent pixels are drawn: one builds the
                     half-size input g1(y), the other the target g2(y). Its
                     regulariser, weighted by `loss.ne2ne_gamma`, pulls
                     f(g1(y)) - g2(y) towards g1(f(y)) - g2(f(y)), the gap of
                     the full-size output's sub-images (no gradient through
                     f(y)); with `loss.ne2ne_gamma_ramp` gamma grows
                     linearly from 0 over training, as the authors' code.
  sure               Stein's unbiased risk estimate for Gaussian noise of
                     known sigma (Metzler et al. 2018), with a Monte-Carlo
                     divergence: ||f(y) - y||^2 / N - sigma^2 +
                     2 sigma^2 / N * b . (f(y + eps b) - f(y)) / eps.

All three assume noise independent from pixel to pixel, so training data
must be at native resolution (no downscaling: it averages and correlates the
noise). A noise-map model (`model.noise_map`) needs each image's noise
level: from the noise the step adds when it is a Gaussian/Poisson kind, else
`loss.noise_sigma` when > 0, else estimated from the image itself
(`estimate_sigma`, a constant Gaussian map).

Images are float32 [B, H, W, 1] in [0, 1]; `keys` holds one PRNG key per
image, so masks depend on the image's index in the global batch and not on
how many devices share it.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from xdn import errors
from xdn import models
from xdn.models import pixel_shuffle
from xdn.noise import synthetic as noise

Array = jax.Array
# apply_fn(model input [B, H, W, C]) -> (model output, collection updates).
ApplyFn = Callable[[Array], Tuple[Array, Any]]

SELF_SUPERVISED = ('noise2self', 'neighbor2neighbor', 'sure')
REPLACEMENTS = ('median', 'random', 'mean')
# Ordered pairs of 4-adjacent positions (2 * row + col) in a 2x2 cell: the
# authors' sampler never pairs diagonal neighbours.
_NEIGHBOUR_PAIRS = ((0, 1), (0, 2), (1, 0), (1, 3), (2, 0), (2, 3), (3, 1),
                    (3, 2))


def is_self_supervised(loss_config: ml_collections.ConfigDict) -> bool:
  """Whether `loss.name` trains without clean images."""
  return loss_config.name in SELF_SUPERVISED


def has_clean_target(config: ml_collections.ConfigDict) -> bool:
  """Whether the data are clean (the step adds the noise), so PSNR is known.

  With `noise.kind='none'` the data are the noisy images themselves.
  """
  return noise.resolve(config.noise.kind, config.noise.level)[0] != 'none'


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line error for a self-supervised config that cannot work."""
  lc = config.loss
  if not is_self_supervised(lc):
    return
  if config.model.name == 'vae':
    raise errors.UserError(
        f'loss.name={lc.name!r} needs a model that outputs an image; the VAE '
        "outputs a distribution: use model.name='unet'")
  if lc.name == 'noise2self':
    if not 0 < lc.mask_density <= 0.25:
      raise errors.UserError(
          f'loss.mask_density={lc.mask_density} must be in (0, 0.25]: '
          'one masked pixel per s x s cell, s >= 2')
    if lc.mask_box < 3 or lc.mask_box % 2 == 0:
      raise errors.UserError(f'loss.mask_box={lc.mask_box} must be an odd '
                             'size >= 3 (the neighbourhood of a masked pixel)')
    if lc.mask_replace not in REPLACEMENTS:
      raise errors.UserError(f'unknown loss.mask_replace '
                             f'{lc.mask_replace!r}; use one of {REPLACEMENTS}')
    if config.data.image_size <= lc.mask_box:
      raise errors.UserError(f'data.image_size={config.data.image_size} must '
                             f'exceed loss.mask_box={lc.mask_box}')
  stride = lc.get('pd_stride', 0)
  if stride < -1 or stride > pixel_shuffle.MAX_STRIDE:
    raise errors.UserError(
        f'loss.pd_stride={stride}: use 0 (off), -1 (from the noise '
        f'correlation) or a stride up to {pixel_shuffle.MAX_STRIDE}')
  if stride > 1 and models.fixed_input_size(config) is not None:
    raise errors.UserError('loss.pd_stride needs a fully convolutional '
                           "model: use model.name='unet'")
  if lc.name == 'neighbor2neighbor':
    if models.fixed_input_size(config) is not None:
      raise errors.UserError(
          'loss.name=neighbor2neighbor feeds half-size images and needs a '
          f'fully convolutional model; model {config.model.name!r} takes '
          "one size only: use model.name='unet'")
    if config.data.image_size < 4:
      raise errors.UserError('neighbor2neighbor needs data.image_size >= 4')
    if lc.ne2ne_gamma < 0:
      raise errors.UserError('loss.ne2ne_gamma must be >= 0')
  if lc.name == 'sure':
    if _gaussian_step_noise(config) is None and lc.noise_sigma <= 0:
      raise errors.UserError(
          'loss.name=sure needs the Gaussian noise sigma: set '
          '--config.loss.noise_sigma=SIGMA (0-255 scale) or add Gaussian '
          "noise in the step (noise.kind='gaussian')")
    if lc.sure_epsilon <= 0:
      raise errors.UserError('loss.sure_epsilon must be > 0')


# ------------------------------------------------------------- blind spot


def cell_size(density: float) -> int:
  """Side s of the cells that each hold one masked pixel (density ~ 1/s^2)."""
  return max(int(round(density**-0.5)), 2)


def mask_positions(key: Array, height: int, width: int,
                   density: float) -> Tuple[Array, Array]:
  """(rows, cols) [h, w] of one random pixel in each s x s cell.

  Stratified as in Noise2Void: masked pixels are spread evenly, never in
  clumps. Cells cut by the border may place theirs outside the image.
  """
  s = cell_size(density)
  offsets = jax.random.randint(key, (2, -(-height // s), -(-width // s)), 0,
                               s)
  rows = (jnp.arange(offsets.shape[1]) * s)[:, None] + offsets[0]
  cols = (jnp.arange(offsets.shape[2]) * s)[None, :] + offsets[1]
  return rows, cols


def blind_spot_mask(key: Array, height: int, width: int,
                    density: float) -> Array:
  """The bool [H, W] mask of `mask_positions`."""
  rows, cols = mask_positions(key, height, width, density)
  return jnp.zeros((height, width), bool).at[rows, cols].set(
      True, mode='drop')


def _neighbour_shifts(box: int) -> Tuple[Tuple[int, int], ...]:
  r = box // 2
  return tuple((dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
               if (dy, dx) != (0, 0))


def replacements_at(key: Array, image: Array, rows: Array, cols: Array,
                    box: int, how: str) -> Array:
  """Values for pixels (rows, cols) of `image` [H, W, C] from their box.

  Never the pixel itself: a neighbour outside the image is taken mirrored
  through the pixel (row i - dy for i + dy), not from a padded image, where
  reflect padding would hand a pixel next to the border its own value (row
  -1 is row 1). H and W must exceed `box`. Returns [*rows.shape, C].
  """
  h, w, _ = image.shape
  rows, cols = jnp.minimum(rows, h - 1), jnp.minimum(cols, w - 1)
  shifts = jnp.asarray(_neighbour_shifts(box))  # [K, 2]

  def source(dy, dx):
    r, c = rows + dy, cols + dx
    return (jnp.where((r >= 0) & (r < h), r, rows - dy),
            jnp.where((c >= 0) & (c < w), c, cols - dx))

  if how == 'random':
    choice = jax.random.randint(key, rows.shape, 0, len(shifts))
    return image[source(shifts[choice, 0], shifts[choice, 1])]
  # Only the masked pixels' boxes: a median over every pixel's box would
  # cost as much as the network.
  r, c = source(shifts[:, 0, None, None], shifts[:, 1, None, None])
  stack = image[r, c]  # [K, *rows.shape, C]
  if how == 'median':
    return jnp.median(stack, axis=0)
  if how == 'mean':
    return jnp.mean(stack, axis=0)
  raise errors.UserError(f'unknown loss.mask_replace {how!r}; use one of '
                         f'{REPLACEMENTS}')


def replacement_values(key: Array, image: Array, box: int,
                       how: str) -> Array:
  """`replacements_at` every pixel of `image` [H, W, C]."""
  rows, cols = jnp.meshgrid(jnp.arange(image.shape[0]),
                            jnp.arange(image.shape[1]), indexing='ij')
  return replacements_at(key, image, rows, cols, box, how)


def mask_images(keys: Array, images: Array,
                loss_config: ml_collections.ConfigDict
                ) -> Tuple[Array, Array]:
  """Blind-spot inputs: (masked images, float mask [B, H, W, 1])."""
  def one(key, image):
    mask_key, value_key = jax.random.split(key)
    h, w, _ = image.shape
    rows, cols = mask_positions(mask_key, h, w, loss_config.mask_density)
    values = replacements_at(value_key, image, rows, cols,
                             loss_config.mask_box, loss_config.mask_replace)
    # Positions outside the image (cut border cells) are dropped.
    masked = image.at[rows, cols].set(values, mode='drop')
    mask = jnp.zeros_like(image).at[rows, cols].set(1.0, mode='drop')
    return masked, mask
  return jax.vmap(one)(keys, images)


def masked_mse(output: Array, noisy: Array, mask: Array) -> Array:
  """Per-image mean squared error over the masked pixels only: [B]."""
  axes = tuple(range(1, noisy.ndim))
  return (jnp.sum(mask * jnp.square(output - noisy), axes) /
          jnp.maximum(jnp.sum(mask, axes), 1.0))


# ------------------------------------------------------ neighbor2neighbor


def neighbour_pair_indices(key: Array, height: int, width: int) -> Array:
  """[H // 2, W // 2, 2] positions (2 * row + col) of two adjacent pixels."""
  choice = jax.random.randint(key, (height // 2, width // 2), 0,
                              len(_NEIGHBOUR_PAIRS))
  return jnp.asarray(_NEIGHBOUR_PAIRS)[choice]


def subsample(image: Array, positions: Array) -> Array:
  """[H, W, C] -> [H // 2, W // 2, C]: pixel `positions` [h, w] of each cell."""
  h, w = positions.shape
  c = image.shape[-1]
  cells = image[:2 * h, :2 * w].reshape(h, 2, w, 2, c)
  cells = cells.transpose(0, 2, 1, 3, 4).reshape(h, w, 4, c)
  return jnp.take_along_axis(cells, positions[:, :, None, None], axis=2)[:, :, 0]


def _pair_subsample(pairs: Array, images: Array) -> Tuple[Array, Array]:
  """The two sub-images g1, g2 of each image of a batch."""
  first = jax.vmap(subsample)(images, pairs[..., 0])
  second = jax.vmap(subsample)(images, pairs[..., 1])
  return first, second


# ------------------------------------------------------------ noise level


def _gaussian_step_noise(config: ml_collections.ConfigDict) -> Optional[str]:
  """'gaussian' if every image the step trains on gets Gaussian noise."""
  kinds = set(noise.train_kinds(config.noise))
  kinds.add(noise.resolve(config.noise.kind, config.noise.level)[0])
  return 'gaussian' if kinds == {'gaussian'} else None


def _step_noise_is_known(config: ml_collections.ConfigDict) -> bool:
  """Whether the step adds noise whose variance it knows (a * x + b)."""
  kinds = set(noise.train_kinds(config.noise))
  kinds.add(noise.resolve(config.noise.kind, config.noise.level)[0])
  return kinds <= set(noise.AFFINE_KINDS)


def batch_variance_law(noisy: Array, a: Array, b: Array,
                       config: ml_collections.ConfigDict
                       ) -> Tuple[Array, Array]:
  """Each image's noise variance a * x + b: added, stated or estimated ([B])."""
  if _step_noise_is_known(config):
    return a, b
  zeros = jnp.zeros(noisy.shape[:1], jnp.float32)
  if config.loss.noise_sigma > 0:
    return zeros, zeros + (config.loss.noise_sigma / 255.0)**2
  return zeros, jnp.square(estimate_sigma(noisy))


def estimate_sigma(noisy: Array) -> Array:
  """Each image's Gaussian noise sigma on the [0, 1] scale: [B, H, W, 1] -> [B].

  `xdn.noise.estimation.estimate_gaussian_sigma` in jnp, so the maps a model
  is trained with are those inference gives it: the MAD of the finest
  diagonal Haar coefficients / 0.6745, refined three times on 2x2 blocks
  whose mean is over two sigmas from 0 and 1 (where clipping is rare).
  """
  h, w = noisy.shape[1] // 2 * 2, noisy.shape[2] // 2 * 2
  x = noisy[:, :h, :w, 0]
  p, q = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
  r, s = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
  mean = ((p + q + r + s) / 4).reshape(x.shape[0], -1)
  detail = jnp.abs((p - q - r + s) / 2).reshape(x.shape[0], -1)
  mad_to_std = 1 / 0.6745
  sigma = jnp.median(detail, axis=1) * mad_to_std
  # Four passes, as the numpy version (three refinements, then its final
  # mask). It assumes white noise: images under
  # noise_estimation.MIN_PIXELS_FOR_CORRELATION (training patches) are
  # taken as white there too.
  for _ in range(4):
    unclipped = ((mean > 2 * sigma[:, None]) &
                 (mean < 1 - 2 * sigma[:, None]))
    refined = jnp.nanmedian(jnp.where(unclipped, detail, jnp.nan),
                            axis=1) * mad_to_std
    # As the numpy version: too few unclipped blocks keep the last value.
    sigma = jnp.where(unclipped.sum(axis=1) >= 48, refined, sigma)
  return sigma


def _input_fn(config: ml_collections.ConfigDict, a: Array, b: Array
              ) -> Callable[[Array], Array]:
  """Images -> model input: a noise map channel for noise-map models."""
  if not config.model.get('noise_map', False):
    return lambda x: x
  return lambda x: noise.with_noise_map(x, a, b)


# ------------------------------------------------------------ entry point


def _without_shuffle(config: ml_collections.ConfigDict
                     ) -> ml_collections.ConfigDict:
  """`config` with its loss on the sub-images themselves."""
  config = config.copy_and_resolve_references()
  config.loss.pd_stride = 0
  return config


def loss_and_output(apply_fn: ApplyFn, noisy: Array, keys: Array,
                    config: ml_collections.ConfigDict, *,
                    a: Optional[Array] = None, b: Optional[Array] = None,
                    progress: Any = 1.0, per_image: bool = False
                    ) -> Tuple[Array, Dict[str, Array], Array, Any]:
  """The self-supervised loss of `config.loss.name` on noisy images alone.

  Args:
    apply_fn: model input -> (output, collection updates), e.g. the model
      applied with train=True and mutable=['batch_stats'].
    noisy: [B, H, W, 1] noisy images in [0, 1] (the training targets too).
    keys: [B] PRNG keys, one per image (masks, sub-samplers, probes).
    config: the run's config (loss, model, noise sections).
    a, b: [B] variance parameters of noise the step added (zeros if none).
    progress: fraction of training done, in [0, 1] (Ne2Ne's gamma ramp).
    per_image: return the loss per image [B] (for evaluation) instead of
      the batch mean.

  Returns:
    (loss, extras: scalar diagnostics, denoised [B, H, W, 1], the updates
    of the pass that carries the gradient). `denoised` is the model's
    output on the masked input for noise2self (no second pass), on the
    whole image otherwise.
  """
  lc = config.loss
  zeros = jnp.zeros(noisy.shape[:1], jnp.float32)
  a = zeros if a is None else a
  b = zeros if b is None else b
  stride = pixel_shuffle.training_stride(config)
  if stride > 1:
    # The loss sees stride x stride sub-images, whose neighbouring pixels
    # were `stride` apart: their noise is (nearly) independent.
    loss, extras, denoised, updates = loss_and_output(
        apply_fn, pixel_shuffle.split(noisy, stride),
        jax.vmap(jax.random.split, (0, None))(keys, stride * stride
                                              ).reshape(-1),
        _without_shuffle(config),
        a=pixel_shuffle.repeat_per_sub_image(a, stride),
        b=pixel_shuffle.repeat_per_sub_image(b, stride), progress=progress,
        per_image=True)
    loss = loss.reshape(-1, stride * stride).mean(axis=1)
    denoised = pixel_shuffle.merge(denoised, stride)
    return (loss if per_image else jnp.mean(loss)), extras, denoised, updates
  if config.model.get('noise_map', False) or lc.name == 'sure':
    a, b = batch_variance_law(noisy, a, b, config)
  to_input = _input_fn(config, a, b)
  keys = jax.vmap(jax.random.split)(keys)  # [B, 2]: two streams per image.

  if lc.name == 'noise2self':
    masked, mask = mask_images(keys[:, 0], noisy, lc)
    out, updates = apply_fn(to_input(masked))
    loss = masked_mse(out, noisy, mask)
    extras = {'masked_fraction': jnp.mean(mask)}
    denoised = out
  elif lc.name == 'neighbor2neighbor':
    h, w = noisy.shape[1], noisy.shape[2]
    pairs = jax.vmap(neighbour_pair_indices, (0, None, None))(
        keys[:, 0], h, w)
    g1, g2 = _pair_subsample(pairs, noisy)
    out, updates = apply_fn(to_input(g1))
    # f(y) only shapes the regulariser's target: no gradient through it.
    full, _ = apply_fn(to_input(noisy))
    full = jax.lax.stop_gradient(full)
    f1, f2 = _pair_subsample(pairs, full)
    diff = out - g2
    axes = (1, 2, 3)
    rec = jnp.mean(jnp.square(diff), axes)
    reg = jnp.mean(jnp.square(diff - (f1 - f2)), axes)
    gamma = lc.ne2ne_gamma * (jnp.clip(progress, 0.0, 1.0)
                              if lc.ne2ne_gamma_ramp else 1.0)
    loss = rec + gamma * reg
    extras = {'rec': jnp.mean(rec), 'reg': jnp.mean(reg),
              'gamma': jnp.asarray(gamma, jnp.float32)}
    denoised = full
  elif lc.name == 'sure':
    sigma2 = b + a * noisy.mean(axis=(1, 2, 3))  # Gaussian: a = 0.
    out, updates = apply_fn(to_input(noisy))
    probe = jax.vmap(lambda k, x: jax.random.normal(k, x.shape, x.dtype))(
        keys[:, 1], noisy)
    eps = lc.sure_epsilon
    perturbed, _ = apply_fn(to_input(noisy + eps * probe))
    axes = (1, 2, 3)
    n = noisy[0].size
    divergence = jnp.sum(probe * (perturbed - out), axes) / eps
    loss = (jnp.mean(jnp.square(out - noisy), axes) - sigma2 +
            2 * sigma2 * divergence / n)
    extras = {'divergence': jnp.mean(divergence) / n}
    denoised = out
  else:
    raise errors.UserError(f'unknown self-supervised loss.name {lc.name!r}; '
                           f'use one of {SELF_SUPERVISED}')
  if not per_image:
    loss = jnp.mean(loss)
  return loss, extras, denoised, updates
