"""Adapting a denoiser to a scanner's own noise, from its noisy images alone.

`adapt(denoiser, images, config)` fine-tunes a noise-map model on the very
images it is to denoise (or on any noisy images of one scanner) and returns
the better of the fine-tuned and the starting model, as judged on held-out
parts of those images. No clean image is needed anywhere.

The loss is Recorrupted-to-Recorrupted (R2R; Pang et al., CVPR 2021): from
a noisy y = x + n and fresh noise z of n's own covariance, the model gets
y1 = y + alpha z and is fitted to y2 = y - z / alpha. The noises of y1 and
y2 are uncorrelated (Cov(n + alpha z, n - z / alpha) = 0), so

    E ||f(y1) - y2||^2 = E ||f(y1) - x||^2 + const,

the supervised error at the noise of y1 (variance (1 + alpha^2) times n's),
which the model is told. Unlike blind-spot and sub-sampling losses it holds
for correlated noise, which real detectors have (the neighbour correlation
is 0.45 on a processed chest PA, 0.6-0.7 on a CR image): what it needs is
noise of the same covariance, and `xdn.noise.texture` measures that on the
images' flattest regions (the scanner's NPS, with its edge enhancement),
while its magnitude per pixel comes from each image's noise estimate, as
the model is told it.

Never worse than the start: the images are cut into tiles and a fixed,
seeded share of the tiles is held out. Every `eval_every` steps the R2R
error on the held-out tiles (with fixed recorruptions, so models are
compared on the same noise) judges the weights; the starting model is
judged first, and a checkpoint replaces the best only when its held-out
error is lower by more than two standard errors of the paired difference
and it removes no more than the start's residual or the noise told (the
discrepancy principle, against a biased criterion), and, at every
calibrated strength level, it keeps faint lesions added to the held-out
tiles as well as the start does (`xdn.inference.levels_kept`: contrast
transfer and NPW d' to 3 %; the levels were calibrated for the start).
Clipped pixels and mostly clipped tiles are left out, and images that clip
throughout are not adapted to. When nothing passes, the start is what comes back, and the
log says so.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from xdn import errors
from xdn.inference.denoiser import Denoiser
from xdn.inference.ensemble import dihedral
from xdn.inference import levels_kept
from xdn.inference import told as told_lib
from xdn.losses.self_supervised import masked_mse
from xdn.metrics import image_quality
from xdn.noise import estimation as noise_estimation
from xdn.noise import report as noise_report
from xdn.noise import synthetic as noise
from xdn.noise import texture as noise_texture
from xdn import pretrained

Array = jax.Array
# Tiles with more clipped pixels than this are left out.
MAX_CLIPPED = 0.01
# How much more than the start's residual (or the noise told) an adapted
# model may remove.
RESIDUAL_SLACK = 0.05
# A typical tile with more clipped pixels than this: no adaptation (edge-
# enhanced sigma 27 noise clips 0.9 %, sigma 75 14 %).
MAX_MEDIAN_CLIPPED = 0.05
# `noise_gain`'s bounds.
MAX_GAIN = 1.25
# progress(step, total steps or None, seconds so far, seconds left or None,
# message): called after each step and each judgement.
Progress = Callable[[int, Optional[int], float, Optional[float], str], None]


def default_config() -> ml_collections.ConfigDict:
  """The adaptation settings (`xdn-denoise`'s adapt flags set them)."""
  c = ml_collections.ConfigDict()
  c.steps = 300  # Budget in optimiser steps (0: no step limit).
  c.seconds = 0.0  # Budget in seconds (0: no time limit).
  c.learning_rate = 2e-5  # Adam; small: the start is already good.
  c.batch_size = 8
  c.tile = 128  # Training and held-out tiles (px).
  c.holdout = 0.2  # Share of the tiles held out to judge the weights.
  c.max_holdout_tiles = 32  # Bounds the cost of each judgement.
  c.eval_every = 50  # Steps between judgements (and at the end).
  c.eval_draws = 2  # Fixed recorruptions per held-out tile.
  c.alpha = 0.5  # R2R's recorruption strength.
  # Weight of `strength_drift`: lower strength levels keep, relative to
  # full, what the starting model kept (0: full strength alone is taught).
  c.keep_strength_weight = 1.0
  c.min_strength = 0.4  # The lowest strength it holds (low is ~0.5).
  # Keep a checkpoint only if, at every calibrated level, it keeps faint
  # lesions added to the held-out tiles as well as the start did
  # (`xdn.inference.levels_kept`).
  c.check_levels = True
  c.kernel_radius = noise_texture.RADIUS
  c.seed = 0
  return c


def check_config(config: ml_collections.ConfigDict) -> None:
  """A one-line error for settings that cannot work."""
  if config.steps <= 0 and config.seconds <= 0:
    raise errors.UserError('adaptation needs a budget: set adapt steps > 0 '
                           'or adapt seconds > 0')
  if not 0 < config.holdout < 1:
    raise errors.UserError(f'adapt holdout={config.holdout} must be in (0, 1)')
  if config.learning_rate <= 0 or config.alpha <= 0:
    raise errors.UserError('adapt learning_rate and alpha must be > 0')
  if config.tile < 32 or config.batch_size < 1 or config.eval_every < 1:
    raise errors.UserError('adapt tile must be >= 32 px, batch_size and '
                           'eval_every >= 1')


class TooClipped(errors.UserError):
  """The images clip too much for recorruption: nothing to adapt."""


@dataclasses.dataclass
class Result:
  """What `adapt` did: the model to use and how it was chosen."""
  denoiser: Denoiser
  kept_start: bool  # True: nothing beat the starting weights.
  best_step: int  # 0: the start.
  steps: int  # Optimiser steps taken.
  seconds: float
  # (step, held-out R2R error, its standard error against the start); the
  # error is the supervised MSE (0-1 scale) plus a constant.
  history: List[Tuple[int, float, float]]
  kernel: Optional[np.ndarray]  # The noise texture (times `noise_gain`).
  reason: str = ''  # Why nothing was tried, if so.
  # Per calibrated level, the chosen model's lesion figures over the
  # start's on the held-out tiles ({}: the start, or not checked).
  levels: Dict[str, Dict[str, float]] = dataclasses.field(
      default_factory=dict)
  # Why the last checkpoint better on the held-out tiles was not kept.
  refused: str = ''

  def summary(self) -> str:
    """One line for the log."""
    if self.reason:
      return f'adaptation kept the starting weights: {self.reason}'
    start = self.history[0][1]
    best = min(v for _, v, _ in self.history)
    if self.kept_start and self.refused:
      return (f'adaptation kept the starting weights: no checkpoint of '
              f'{self.steps} steps that beat them on the held-out tiles '
              f'(R2R error {start:.6g} -> {best:.6g}) was kept; the last '
              f'was not because {self.refused}, {self.seconds:.0f} s')
    if self.kept_start:
      return (f'adaptation kept the starting weights: no checkpoint of '
              f'{self.steps} steps beat them on the held-out tiles '
              f'(R2R error {start:.6g}), {self.seconds:.0f} s')
    kept = ''
    if self.levels:
      kept = ("; faint lesions' contrast transfer / NPW d' over the "
              "start's: " + ', '.join(
                  f"{level} {r['transfer']:.2f} / {r['d_prime']:.2f}"
                  for level, r in self.levels.items()))
    return (f'adaptation kept step {self.best_step} of {self.steps}: '
            f'held-out R2R error {start:.6g} -> {best:.6g}, '
            f'{self.seconds:.0f} s{kept}')


# ------------------------------------------------------------------ tiles


@dataclasses.dataclass
class _Tiles:
  """Tiles [N, t, t, 1] with the noise they are told: params [N] each."""
  images: np.ndarray
  params: Tuple[np.ndarray, ...]
  owner: np.ndarray  # [N]: the image each tile is of.


def _tile_images(images: Sequence[np.ndarray],
                 params: Tuple[np.ndarray, ...], tile: int) -> _Tiles:
  """All whole, unclipped tiles of all images, each with its image's
  noise params."""
  tiles, owner, clipped = [], [], []
  for i, image in enumerate(images):
    h, w = image.shape
    for y in range(0, h - tile + 1, tile):
      for x in range(0, w - tile + 1, tile):
        part = image[y:y + tile, x:x + tile]
        clipped.append(np.mean((part <= 0.0) | (part >= 1.0)))
        # R2R needs additive noise: where the noisy image clipped (black
        # collimation, burnt-in labels, saturation) it is not, and its
        # neighbours' noise is truncated too. Measured on edge-enhanced
        # noise: tiles up to 25 % clipped (their clipped pixels out of the
        # loss) gave -1.5 dB, tiles up to 1 % +0.5 dB.
        if clipped[-1] > MAX_CLIPPED:
          continue
        tiles.append(part)
        owner.append(i)
  if not clipped:
    raise errors.UserError(
        f'adaptation needs images of at least {tile}x{tile} px; give larger '
        'images or a smaller adapt tile')
  if np.median(clipped) > MAX_MEDIAN_CLIPPED or len(tiles) < 2:
    raise TooClipped(
        f'{np.median(clipped):.1%} of the pixels of a typical tile are '
        'clipped: too strong a noise (or too much black or white) to '
        'adapt to by recorruption')
  owner = np.asarray(owner)
  return _Tiles(np.stack(tiles)[..., None].astype(np.float32),
                tuple(p[owner] for p in params), owner)


def _split(count: int, config: ml_collections.ConfigDict
           ) -> Tuple[np.ndarray, np.ndarray]:
  """(train, held-out) tile indices: a seeded share held out."""
  order = np.random.default_rng(config.seed).permutation(count)
  held = int(np.clip(round(config.holdout * count), 1, count - 1))
  held = min(held, config.max_holdout_tiles)
  return np.sort(order[held:]), np.sort(order[:held])


def _subset(tiles: _Tiles, index: np.ndarray) -> _Tiles:
  return _Tiles(tiles.images[index], tuple(p[index] for p in tiles.params),
                tiles.owner[index])


# ---------------------------------------------------------- recorruption


def recorruption(key: Array, noisy: Array, params: Tuple[Array, ...],
                 kernel: Array) -> Array:
  """Fresh noise z for [B, H, W, 1] `noisy`: white noise filtered by the
  unit `kernel` (the scanner's texture), times each pixel's noise std."""
  a, b, _, dose, _ = params
  r = kernel.shape[0] // 2
  batch, h, w, _ = noisy.shape
  white = jax.random.normal(key, (batch, h + 2 * r, w + 2 * r, 1))
  shaped = jax.lax.conv_general_dilated(
      white, kernel[:, :, None, None], (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return shaped * noise.noise_std_map(noisy, a, b, dose)


def told_noisier(params: Tuple[Array, ...], alpha: float
                 ) -> Tuple[Array, ...]:
  """The noise params of y + alpha z: variance (1 + alpha^2) times, at
  full strength (the loss is the supervised error, the PSNR-optimal
  setting; strength levels apply at inference as before)."""
  a, b, rho, dose, scale = params
  grow = 1.0 + alpha**2
  return (a * grow, b * grow, rho, jnp.where(dose > 0, dose / grow, 0.0),
          jnp.ones_like(scale))


def r2r_errors(forward: Callable, variables, noisy: Array,
               params: Tuple[Array, ...], kernel: Array, key: Array,
               alpha: float) -> Array:
  """Per-tile R2R error ||f(y + alpha z) - (y - z / alpha)||^2 / N over
  the unclipped pixels: [B]."""
  return _r2r(forward, variables, noisy, params, kernel, key, alpha)[0]


def _r2r(forward: Callable, variables, noisy: Array,
         params: Tuple[Array, ...], kernel: Array, key: Array, alpha: float
         ) -> Tuple[Array, Array, Tuple[Array, ...], Array]:
  """(per-tile R2R error, the model input y1, what it was told, f(y1))."""
  z = recorruption(key, noisy, params, kernel)
  noisier, told = noisy + alpha * z, told_noisier(params, alpha)
  out = forward(variables, noisier, told, True)
  error = masked_mse(out, noisy - z / alpha, _unclipped(noisy))
  return error, noisier, told, out


def _unclipped(noisy: Array) -> Array:
  """1 where a pixel holds additive noise (not clipped to 0 or 1), else 0."""
  return ((noisy > 0.0) & (noisy < 1.0)).astype(jnp.float32)


def strength_drift(forward: Callable, variables, start_variables,
                   noisy: Array, told: Tuple[Array, ...], full: Array,
                   key: Array, min_strength: float) -> Array:
  """Per-tile drift of what a lower strength keeps: at a random strength
  s in [min_strength, 1), ||(f(y; s) - f(y; 1)) - (f0(y; s) - f0(y; 1))||^2
  / N, f0 the starting model and `full` = f(y; 1).

  The R2R loss teaches the full-strength output only; the strength levels
  were calibrated on the start's lower settings (what each keeps of the
  lesions and the texture), so the fine-tune keeps their difference to
  full as the start had it.
  """
  s = jax.random.uniform(key, told[-1].shape, jnp.float32, min_strength, 1.0)
  at_s = told[:-1] + (s,)
  kept = forward(variables, noisy, at_s, False) - full
  start_full = forward(start_variables, noisy, told, True)
  start_kept = forward(start_variables, noisy, at_s, False) - start_full
  return jnp.mean(jnp.square(kept - jax.lax.stop_gradient(start_kept)),
                  axis=(1, 2, 3))


def residual_power(forward: Callable, variables, noisy: Array,
                   params: Tuple[Array, ...]) -> Array:
  """Per-tile mean of (y - f(y))^2 over the unclipped pixels, the model
  told the noise as at inference, at full strength: [B]."""
  told = params[:-1] + (jnp.ones_like(params[-1]),)
  return masked_mse(forward(variables, noisy, told, True), noisy,
                    _unclipped(noisy))


def noise_power(held: _Tiles) -> float:
  """The mean noise variance the model is told on the held-out tiles."""
  a, b, _, dose, _ = held.params
  return float(np.mean(np.square(np.asarray(noise.noise_std_map(
      jnp.asarray(held.images), a, b, dose)))))


# -------------------------------------------------------------- the loop


def _judge(errors_fn: Callable, variables, held: _Tiles, keys: Array,
           batch: int) -> np.ndarray:
  """Held-out R2R error per (draw, tile), in fixed-size batches."""
  values = []
  for d in range(keys.shape[0]):
    for start in range(0, len(held.images), batch):
      images = held.images[start:start + batch]
      params = tuple(p[start:start + batch] for p in held.params)
      n = len(images)
      if n < batch:  # One compiled shape for all batches.
        images = np.concatenate([images, np.repeat(images[-1:], batch - n,
                                                   0)])
        params = tuple(np.concatenate([p, np.repeat(p[-1:], batch - n)])
                       for p in params)
      key = jax.random.fold_in(keys[d], start)
      values.append(np.asarray(errors_fn(variables, images, params,
                                         key))[:n])
  return np.concatenate(values)


def _prepare(denoiser: Denoiser, images: Sequence[np.ndarray],
             config: ml_collections.ConfigDict,
             noise_levels: Optional[Sequence[noise_estimation.NoiseEstimate]]
             ) -> Tuple[_Tiles, _Tiles, np.ndarray,
                        Dict[str, Tuple[np.ndarray, ...]]]:
  """(training tiles, held-out tiles, noise texture kernel, and per
  calibrated level below full what it tells the model of each held-out
  tile) of `images`."""
  if not denoiser.capabilities.takes_noise_map:
    raise errors.UserError(
        f'model {denoiser.name!r} is not told the noise, so it cannot be '
        'adapted by recorruption; use the shipped model or another with a '
        'noise map')
  images = [np.asarray(i, np.float32) for i in images]
  if not images or any(i.ndim != 2 for i in images):
    raise errors.UserError('adapt needs a list of [H, W] images')
  noise_levels = told_lib.noise_for_each(denoiser.capabilities, images,
                                         noise_levels)
  params = denoiser.noise_params(noise_levels, len(images))
  tiles = _tile_images(images, params, config.tile)
  train_index, held_index = _split(len(tiles.images), config)
  # One search for the flat regions serves the texture and its level.
  size = noise_texture.region_for(images)
  regions = noise_texture.flat_regions_per_image(images, size)
  try:
    kernel = noise_texture.kernel_from_nps(image_quality.nps_of_rois(
        noise_texture.pooled_residuals(regions, size)), config.kernel_radius)
  except errors.UserError:
    # Clipped everywhere (very strong noise, burnt-in borders): the texture
    # the estimator measured, in xdn's correlated-noise family.
    kernel = noise_texture.kernel_of_correlations(
        float(np.mean([l.rho_y for l in noise_levels])),
        float(np.mean([l.rho_x for l in noise_levels])), config.kernel_radius)
  gain = noise_gain(images, params, regions, size)
  held = _subset(tiles, held_index)
  told_levels = {}
  for level in levels_kept.levels_of(denoiser.config.get('inference', {})):
    told = denoiser.at_strength(level).noise_params(noise_levels,
                                                    len(images))
    told_levels[level] = tuple(np.asarray(p)[held.owner] for p in told)
  return (_subset(tiles, train_index), held, kernel * np.float32(gain),
          told_levels)


def noise_gain(images: Sequence[np.ndarray], params: Tuple[np.ndarray, ...],
               regions: Sequence[Optional[noise_report.FlatRegions]],
               size: int) -> float:
  """The factor on the estimated noise std that gives the variance
  measured on the images' flattest regions (`regions`, of `size` px, from
  `noise_texture.flat_regions_per_image`), within [1 / MAX_GAIN, MAX_GAIN].

  Fresh noise weaker than the image's makes R2R's target share noise with
  its input (the model learns to keep noise); stronger, it learns to
  smooth. The estimator assumes a Gaussian-kernel texture and misjudges
  others (by 7 % on edge-enhanced noise); the flat regions measure the
  texture's own variance. Bounded because on nearly clean images the flat
  regions' variance is anatomy, not noise.
  """
  measured = predicted = 0.0
  for i, (image, found) in enumerate(zip(images, regions)):
    if found is None:
      continue
    std = np.asarray(noise.noise_std_map(
        jnp.asarray(image)[None, ..., None], params[0][i], params[1][i],
        params[3][i]))[0, ..., 0]
    for residual, (y, x) in zip(found.residuals, found.corners):
      measured += float(np.var(residual))
      predicted += float(np.mean(std[y:y + size, x:x + size]**2))
  if predicted <= 0:
    return 1.0
  return float(np.clip(np.sqrt(measured / predicted), 1 / MAX_GAIN, MAX_GAIN))


def _judge_fn(forward: Callable, frozen, kernel: Array, alpha: float
              ) -> Callable:
  return jax.jit(lambda p, images, params, key: r2r_errors(
      forward, {'params': p, **frozen}, images, params, kernel, key, alpha))


def criterion(denoiser: Denoiser, images: Sequence[np.ndarray],
              config: Optional[ml_collections.ConfigDict] = None,
              noise_levels: Optional[Sequence[
                  noise_estimation.NoiseEstimate]] = None) -> float:
  """The held-out R2R error `adapt` judges `denoiser` by on `images` (the
  same tiles and recorruptions): lower is better, from noisy data alone."""
  config = config or default_config()
  _, held, kernel, _ = _prepare(denoiser, images, config, noise_levels)
  frozen = {k: v for k, v in denoiser.variables.items() if k != 'params'}
  judge = _judge_fn(denoiser.forward('float32'), frozen, jnp.asarray(kernel),
                    float(config.alpha))
  return float(_judge(judge, denoiser.variables['params'], held,
                      _judge_keys(config), config.batch_size).mean())


def _judge_keys(config: ml_collections.ConfigDict) -> Array:
  return jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1),
                          config.eval_draws)


def adapt(denoiser: Denoiser, images: Sequence[np.ndarray],
          config: Optional[ml_collections.ConfigDict] = None,
          noise_levels: Optional[Sequence[noise_estimation.NoiseEstimate]]
          = None, progress: Optional[Progress] = None) -> Result:
  """Fine-tunes `denoiser` on noisy `images` ([H, W] in [0, 1]) alone.

  `noise_levels`: one estimate per image (None: estimated, as the
  denoiser would). Returns the fine-tuned or the starting denoiser,
  whichever the held-out tiles judge better (see the module docstring).
  """
  config = config or default_config()
  check_config(config)
  started = time.monotonic()
  try:
    train, held, kernel, told_levels = _prepare(denoiser, images, config,
                                                noise_levels)
  except TooClipped as e:
    return Result(denoiser, kept_start=True, best_step=0, steps=0,
                  seconds=time.monotonic() - started, history=[],
                  kernel=None, reason=str(e))
  kernel_j = jnp.asarray(kernel)
  forward = denoiser.forward('float32')
  alpha = float(config.alpha)

  trainable = denoiser.variables['params']
  frozen = {k: v for k, v in denoiser.variables.items() if k != 'params'}
  optimizer = optax.adam(config.learning_rate)

  start_variables = denoiser.variables
  keep = float(config.keep_strength_weight)

  def loss_fn(p, images_, params_, kernel_, key):
    variables = {'params': p, **frozen}
    r2r_key, strength_key = jax.random.split(key)
    errors_, noisier, told, out = _r2r(forward, variables, images_, params_,
                                       kernel_, r2r_key, alpha)
    loss = jnp.mean(errors_)
    if keep > 0:
      loss = loss + keep * jnp.mean(strength_drift(
          forward, variables, start_variables, noisier, told, out,
          strength_key, config.min_strength))
    return loss

  @jax.jit
  def step_fn(p, opt_state, images_, params_, kernel_, key):
    loss, grads = jax.value_and_grad(loss_fn)(p, images_, params_, kernel_,
                                              key)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  judge_fn = _judge_fn(forward, frozen, kernel_j, alpha)
  root = jax.random.key(config.seed)
  judge_keys = _judge_keys(config)
  batch = config.batch_size

  def judge(p) -> np.ndarray:
    return _judge(judge_fn, p, held, judge_keys, batch)

  # The discrepancy principle guards against a biased criterion (a noise
  # model that is off, heavy clipping): a denoiser whose residual y - f(y)
  # holds more than the noise's power removes anatomy too. A candidate may
  # remove up to the start's residual or the noise told, whichever is
  # larger (plus RESIDUAL_SLACK), and no more.
  resid_fn = jax.jit(lambda p, images_, params_, key: residual_power(
      forward, {'params': p, **frozen}, images_, params_))
  no_keys = judge_keys[:1]
  allowed = (1 + RESIDUAL_SLACK) * max(
      float(_judge(resid_fn, trainable, held, no_keys, batch).mean()),
      noise_power(held))
  start_errors = judge(trainable)
  levels_ok = _levels_check(forward, frozen, trainable, held, kernel_j,
                            told_levels if config.check_levels else {},
                            config)
  best_levels: Dict[str, Dict[str, float]] = {}
  refused = ''
  history = [(0, float(start_errors.mean()), 0.0)]
  best, best_errors, best_step = trainable, start_errors, 0
  report = progress or (lambda *args: None)
  total = config.steps if config.steps > 0 else None
  report(0, total, time.monotonic() - started, None,
         f'held-out R2R error of the start {history[0][1]:.6g}')

  p, opt_state = trainable, optimizer.init(trainable)
  rng = np.random.default_rng(config.seed + 1)
  step = 0
  loop_started = time.monotonic()
  while True:
    elapsed = time.monotonic() - loop_started
    if (total and step >= total) or (config.seconds > 0 and
                                     elapsed >= config.seconds):
      break
    pick = rng.integers(0, len(train.images), batch)
    # A flip of the tiles flips their noise: the recorruption's kernel
    # takes the same flip, so z keeps the noise's (possibly anisotropic)
    # texture.
    flips = int(rng.integers(0, 8))
    batch_images = dihedral(train.images[pick], flips)
    batch_kernel = dihedral(kernel[None, :, :, None], flips)[0, :, :, 0]
    batch_params = tuple(q[pick] for q in train.params)
    p, opt_state, _ = step_fn(p, opt_state, batch_images, batch_params,
                              batch_kernel,
                              jax.random.fold_in(root, 2 + step))
    step += 1
    due = step % config.eval_every == 0
    last = ((total and step >= total) or
            (config.seconds > 0 and
             time.monotonic() - loop_started >= config.seconds))
    message = ''
    if due or last:
      values = judge(p)
      diff = values - start_errors
      se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 \
          else float('inf')
      history.append((step, float(values.mean()), se))
      # Better than the start beyond its noise, and than the best so far,
      # and removing no more than the noise.
      better = diff.mean() < -2 * se and values.mean() < best_errors.mean()
      removed = (float(_judge(resid_fn, p, held, no_keys, batch).mean())
                 if better else 0.0)
      why_not = ''
      if better and removed > allowed:
        why_not = f'it removes {removed / allowed:.2f}x the noise allowed'
      elif better:
        ratios = levels_ok(p)
        why_not = levels_kept.shortfall(ratios)
        if not why_not:
          best, best_errors, best_step = p, values, step
          best_levels = ratios
      refused = why_not or refused
      message = (f'step {step}: held-out R2R error {values.mean():.6g} '
                 f'(start {history[0][1]:.6g}, best at step {best_step})' +
                 (f'; not kept: {why_not}' if why_not else ''))
    elapsed = time.monotonic() - loop_started
    rates = [elapsed / step * (total - step) if total else None,
             config.seconds - elapsed if config.seconds > 0 else None]
    left = min([r for r in rates if r is not None], default=None)
    report(step, total, time.monotonic() - started,
           max(left, 0.0) if left is not None else None, message)

  adapted = dataclasses.replace(
      denoiser, variables={'params': best, **frozen},
      name=f'{denoiser.name}+adapted' if best_step else denoiser.name)
  return Result(adapted, kept_start=best_step == 0, best_step=best_step,
                steps=step, seconds=time.monotonic() - started,
                history=history, kernel=kernel,
                levels=best_levels if best_step else {},
                refused=refused)


def _levels_check(forward: Callable, frozen, start_params, held: _Tiles,
                  kernel: Array, told_levels: Dict[str, Tuple[np.ndarray,
                                                               ...]],
                  config: ml_collections.ConfigDict
                  ) -> Callable[[Any], Dict[str, Dict[str, float]]]:
  """params -> per level, its faint-lesion figures over the start's on
  the held-out tiles (`levels_kept`); {} when there is no level to check."""
  if not told_levels:
    return lambda p: {}
  key = jax.random.fold_in(jax.random.key(config.seed), 2)
  fresh = np.asarray(recorruption(key, jnp.asarray(held.images),
                                  tuple(jnp.asarray(q) for q in held.params),
                                  kernel))
  probe = levels_kept.make_probe(held.images, held.params, told_levels,
                                 np.asarray(kernel), fresh)
  batch = config.batch_size
  apply = levels_kept.compiled(forward)

  def figures(p):
    return levels_kept.measure(apply, {'params': p, **frozen}, probe, batch)

  start: List[levels_kept.Figures] = []  # Measured when first needed.

  def check(p):
    if not start:
      start.append(figures(start_params))
    return levels_kept.compare(start[0], figures(p))
  return check


def save(denoiser: Denoiser, folder: str) -> str:
  """Writes an (adapted) denoiser as a model folder that `xdn-denoise`
  and `xdn.inference.load` read as a model. Float32 weights: a
  fine-tune's small steps would round away in float16."""
  return pretrained.save(folder, denoiser.config,
                         denoiser.variables['params'], denoiser.step,
                         denoiser.name, dtype='float32')
