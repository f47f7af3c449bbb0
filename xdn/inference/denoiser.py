"""Trained models ready to apply, and tiled denoising of whole radiographs.

  denoiser = load_pretrained()            # The model shipped inside xdn.
  denoiser = load_denoiser('runs/unet')   # A model trained with run.py.
  clean = denoise_image(denoiser, noisy)  # [H, W] in [0, 1], any size.

A model that takes a noise-level map (the shipped one) is told the noise of
each image: given as a `NoiseEstimate` (`xdn.noise.estimation.known_noise`)
or, by default, estimated from the image itself (blind).

Used by `xdn-evaluate` and `xdn-denoise`. Imports JAX and flax, but neither
training code nor TensorFlow (nor orbax and optax, until a training
workdir's model is loaded), so it starts quickly.
"""

import copy
import dataclasses
import functools
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xdn.runtime import batching
from xdn.runtime import compile_cache
from xdn import errors
from xdn import models
from xdn.noise import synthetic as noise
from xdn.noise import estimation as noise_estimation
from xdn.models import pixel_shuffle
from xdn import pretrained
from xdn.inference import size_buckets
from xdn.inference import strength as strength_lib
from xdn.runtime import xla_flags
from xdn.noise.estimation import NoiseEstimate

PRECISIONS = ('auto', 'float32', 'bfloat16')
# precision='auto' picks bfloat16 only when the model's card states a PSNR
# cost at most this large (config `inference.bfloat16_psnr_cost_db`).
MAX_BFLOAT16_COST_DB = 0.1


def bfloat16_costs(config: ml_collections.ConfigDict) -> Dict[str, float]:
  """The model card's measured bfloat16 PSNR cost (dB) per noise kind.

  `inference.bfloat16_psnr_cost_db` is one number (the worst over the
  held-out settings: key '*') or a mapping kind -> cost, kinds as
  `cost_kind` names them; {} when never measured.
  """
  cost = config.get('inference', {}).get('bfloat16_psnr_cost_db', None)
  if cost is None:
    return {}
  if isinstance(cost, (int, float)):
    return {'*': float(cost)}
  return {k: float(v) for k, v in cost.items()}


def cost_kind(estimate: Optional[NoiseEstimate]) -> str:
  """The noise kind an estimate's bfloat16 cost is looked up under."""
  if estimate is None:
    return '*'
  if estimate.kind == 'gaussian' and estimate.correlation > 0.1:
    return 'correlated_gaussian'
  return estimate.kind


def bfloat16_allowed(costs: Dict[str, float], kinds: Sequence[str]) -> bool:
  """Whether every kind's cost is measured and at most the allowance."""
  if not costs:
    return False
  worst = max(costs.values())
  return all(costs.get(k, worst) <= MAX_BFLOAT16_COST_DB for k in kinds)


def resolve_precision(precision: str, config: ml_collections.ConfigDict
                      ) -> str:
  """'float32', 'bfloat16' or, per call, 'auto' for a requested precision.

  'auto': bfloat16 where the machine computes it natively (a GPU or TPU, or
  a CPU with AVX512_BF16 / AMX) and the model's measured bfloat16 cost is
  at most MAX_BFLOAT16_COST_DB: on every held-out setting when the card
  states one number; per image's noise kind when it states one per kind
  (then 'auto' stays, and each call decides); else float32.
  """
  if precision not in PRECISIONS:
    raise errors.UserError(f'unknown precision {precision!r}; use one of '
                           f'{PRECISIONS}')
  if precision != 'auto':
    return precision
  costs = bfloat16_costs(config)
  native = (jax.default_backend() != 'cpu' or xla_flags.native_bfloat16())
  if not native or not costs or min(costs.values()) > MAX_BFLOAT16_COST_DB:
    return 'float32'
  if set(costs) == {'*'}:
    return 'bfloat16' if costs['*'] <= MAX_BFLOAT16_COST_DB else 'float32'
  return 'auto'

# Tiles of the fully convolutional models: TILE pixels with OVERLAP pixels
# shared by neighbours (blended with linear ramps). 512 + 32: a 2048x2048
# image is 4x4 tiles, 13% more pixels than the image itself.
TILE = 544
OVERLAP = 32
# Images up to this size are denoised whole, larger ones in tiles: the one
# rule of `denoise_image` and `xdn-denoise`. Whole is faster (no overlap,
# one call: a 2048x2048 radiograph in 0.8x the time of 544-px tiles) and
# stays under 2 GB of memory at 2048x2048 (xdn-bench --inference).
MAX_WHOLE_PIXELS = 2048 * 2048


@dataclasses.dataclass
class Denoiser:
  """Applies a model to [B, H, W, 1] float32 images in [0, 1]."""
  config: ml_collections.ConfigDict
  variables: Any
  step: int
  name: str
  batch_size: int = 32  # Images per compiled call (bounds memory).
  # Images of at most this many pixels are denoised as the mean over their
  # 8 flips and 90-degree rotations (the "x8" self-ensemble of DnCNN and
  # DRUNet): +0.15-0.25 dB on 64x64 thumbnails, at 8x the compute, which
  # small images can afford. 0: never.
  ensemble_max_pixels: int = 256 * 256
  # The noise std (0-255) of the model's own training targets: detector
  # noise that the "clean" radiographs it learnt from already hold, which
  # it therefore takes for anatomy. Added in quadrature to the noise it is
  # told, so that noise as weak as that is still removed. From the
  # config's `inference.target_noise_sigma`; 0: none.
  target_noise_sigma: float = -1.0
  # Compute precision: 'float32', 'bfloat16' or 'auto' (resolve_precision).
  # Outputs are float32 in [0, 1] either way.
  precision: str = 'float32'
  # A level of `xdn.inference.strength` ('low', 'medium', 'high', 'full') or a factor
  # on the noise the model is told; None: the model's default
  # (`strength.default_for`: 'medium' once calibrated, else 'full').
  strength: Optional[strength_lib.Strength] = None
  # Whole images are padded into size buckets of this many sizes per
  # octave (`xdn.inference.size_buckets`), so that a folder of many sizes compiles a
  # few programs; outputs as without. 0: each size compiled as it is.
  bucket_steps: int = size_buckets.STEPS_PER_OCTAVE
  _apply: Callable = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    if self.target_noise_sigma < 0:
      self.target_noise_sigma = float(
          self.config.get('inference', {}).get('target_noise_sigma', 0.0))
    self.set_strength(self.strength)
    self.precision = resolve_precision(self.precision, self.config)
    dtypes = (('float32', 'bfloat16') if self.precision == 'auto' else
              (self.precision,))
    self._applies = {dtype: self._compiled(dtype) for dtype in dtypes}
    self._precompiled = set()  # Signatures `precompile` has compiled.
    self._apply = self._applies[dtypes[0]]

  def forward(self, dtype: str = 'float32') -> Callable:
    """The model as a pure function in compute `dtype`, not jitted:
    (variables, images [B, H, W, 1], noise params of `noise_params`,
    at_full, valid=None, margin=None) -> float32 output; `valid`, `margin`:
    the images' region [rows, cols] inside a size bucket and its static
    bound (`takes_valid` models, `unet.Region`). Differentiable in
    `variables` (what `xdn.inference.adaptation` fine-tunes)."""
    config = self.config
    if dtype != config.model.get('dtype', 'float32'):
      config = config.copy_and_resolve_references()
      config.model.dtype = dtype
    model = models.create_model(config)
    channels = models.noise_channels(self.config)
    stride = pixel_shuffle.inference_stride(self.config)
    # A model with a fidelity branch is its base alone at full strength (the
    # branch's output is multiplied by 1 - s = 0): skip the branch's cost.
    base = None
    if config.model.get('fidelity_branch_width', 0) > 0:
      base_config = config.copy_and_resolve_references()
      base_config.model.strength_map = False
      base_config.model.fidelity_branch_width = 0
      base = models.create_model(base_config)

    def denoise(variables, images, params, at_full, valid=None, margin=None):
      net = model
      region = {} if valid is None else {'valid': valid, 'margin': margin}
      if channels:
        a, b, rho, dose, scale = params
        if channels == 3 and at_full and base is not None:
          net = base
          images = noise.with_noise_map(images, a, b, rho, xray_dose=dose,
                                        scale=scale)
        elif channels == 3:
          # Its own strength map up to full; beyond, a larger noise told.
          images = noise.with_noise_map(
              images, a, b, rho, xray_dose=dose,
              scale=jnp.maximum(scale, 1.0), strength=jnp.minimum(scale, 1.0))
        else:
          images = noise.with_noise_map(images, a, b,
                                        rho if channels == 2 else None,
                                        xray_dose=dose, scale=scale)
      if net is base:
        variables = {'params': {k: v for k, v in variables['params'].items()
                                if k != 'fidelity'}}
      # A model trained on pixel-shuffled sub-images is applied to them.
      out = pixel_shuffle.denoise_shuffled(
          lambda x: models.denoised_image(net.apply(variables, x,
                                                    train=False, **region)),
          images, stride)
      return out.astype(jnp.float32)

    return denoise

  def _compiled(self, dtype: str) -> Callable:
    """The jitted model in compute `dtype` (compiled on first use)."""
    denoise = self.forward(dtype)

    @functools.partial(jax.jit, static_argnums=(3, 4, 6))
    def apply(variables, images, params, ensemble: bool, at_full: bool,
              valid, margin):
      if not ensemble:
        return jnp.clip(denoise(variables, images, params, at_full, valid,
                                margin), 0.0, 1.0)
      # Transposing swaps the axes' correlations; the model is told their
      # mean, which a transpose keeps.
      outs = [_undo_dihedral(denoise(variables, dihedral(images, k),
                                     params, at_full), k) for k in range(8)]
      return jnp.mean(jnp.clip(jnp.stack(outs), 0.0, 1.0), axis=0)

    return apply

  def precompile(self, image_shape: Sequence[int],
                 max_pixels: int = MAX_WHOLE_PIXELS) -> bool:
    """Compiles, ahead of its call, the program `denoise_image` runs on a
    whole [H, W] image (in the precision Gaussian noise gets), so that a
    caller can overlap compiling with other work, such as the image's
    noise estimate: the call then finds it in JAX's persistent cache
    (`xdn.runtime.compile_cache`). Only with that cache on; returns whether it
    compiled, and never raises (the call would compile as usual)."""
    h, w = image_shape[:2]
    signature = (h, w, max_pixels, self.bucket_steps, self.precision,
                 self.strength_factor)
    if (compile_cache.active() is None or self.fixed_size is not None or
        h * w > max_pixels or signature in self._precompiled):
      return False
    self._precompiled.add(signature)
    dtype = self.precision
    if dtype == 'auto':
      dtype = ('bfloat16' if bfloat16_allowed(bfloat16_costs(self.config),
                                              ['gaussian']) else 'float32')
    f32 = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    valid = margin = None
    if self.bucketed((h, w)):
      m = self.size_multiple
      h, w = size_buckets.bucket_shape(h, w, m, self.bucket_steps)
      valid = jax.ShapeDtypeStruct((2,), jnp.int32)
      margin = size_buckets.margins((1, h, w, 1), m, self.bucket_steps)
    try:
      self._applies[dtype].lower(
          self.variables, f32((1, h, w, 1)), tuple(f32((1,)) for _ in range(5)),
          valid is None and h * w <= self.ensemble_max_pixels,
          self.strength_factor >= 1.0, valid, margin).compile()
    except Exception as e:  # pylint: disable=broad-except  # Only a hint.
      logging.debug('precompile of %dx%d failed: %s', h, w, e)
      return False
    return True

  def precision_for(self, noise_levels: Optional[Sequence[NoiseEstimate]]
                    ) -> str:
    """The compute precision of one call: 'auto' decides by the noise
    kinds of its images (`bfloat16_allowed`)."""
    if self.precision != 'auto':
      return self.precision
    kinds = ([cost_kind(l) for l in noise_levels] if noise_levels else
             ['*'])
    return ('bfloat16' if bfloat16_allowed(bfloat16_costs(self.config),
                                           kinds) else 'float32')

  def set_strength(self, strength: Optional[strength_lib.Strength]) -> None:
    """Sets the strength (see the field); no recompilation."""
    inference_config = self.config.get('inference', {})
    value = strength_lib.factor(strength, inference_config, self.name)
    if value != 1.0 and not self.takes_noise_map:
      raise errors.UserError(
          f'model {self.name!r} takes no noise level, so its strength cannot '
          'be set; use --strength=full (or a model with a noise map)')
    self.strength = (strength_lib.default_for(inference_config)
                     if strength is None else strength_lib.parse(strength))
    # The factor for white noise; `strength_factors` gives each image's.
    self.strength_factor = value

  def strength_factors(self, noise_levels: Optional[Sequence[NoiseEstimate]],
                       count: int) -> np.ndarray:
    """[count] factors: a level calibrated per correlation takes each
    image's estimated correlation."""
    if noise_levels is None:
      return np.full(count, self.strength_factor, np.float32)
    config = self.config.get('inference', {})
    return np.array([strength_lib.factor(self.strength, config, self.name,
                                         level.correlation)
                     for level in noise_levels], np.float32)

  def at_strength(self, strength: Optional[strength_lib.Strength]
                  ) -> 'Denoiser':
    """A copy at another strength, sharing weights and compiled code."""
    other = copy.copy(self)
    other.set_strength(strength)
    return other

  @property
  def strength_label(self) -> str:
    """The strength for logs and tables, e.g. 'medium (s 0.78)'."""
    return strength_lib.describe(self.strength,
                                 self.config.get('inference', {}))

  @property
  def fixed_size(self) -> Optional[int]:
    """The square size the model needs (the seed models), or None."""
    return models.fixed_input_size(self.config)

  @property
  def size_multiple(self) -> int:
    """Tiles start at multiples of this, so strided convolutions see the
    same pixel grid in every tile."""
    return (models.size_multiple(self.config) *
            pixel_shuffle.inference_stride(self.config))

  def _ensemble(self, images: np.ndarray) -> bool:
    # Not for the fixed-size seed models: they were never meant to see
    # their images flipped, and gain nothing from it.
    return (self.fixed_size is None and
            images.shape[1] * images.shape[2] <= self.ensemble_max_pixels)

  @property
  def takes_valid(self) -> bool:
    """Whether the model computes an image inside a larger input exactly
    (a size bucket, `xdn.inference.size_buckets`)."""
    return (self.fixed_size is None and models.takes_valid(self.config) and
            pixel_shuffle.inference_stride(self.config) == 1)

  def bucketed(self, image_shape: Sequence[int]) -> bool:
    """Whether a whole [H, W] image is denoised in its size bucket: not
    when its size (padded to `size_multiple`) is a bucket's own, which is
    then compiled as it is (no masks to compute)."""
    h, w = image_shape[:2]
    if not (self.bucket_steps > 0 and self.takes_valid and
            h * w > self.ensemble_max_pixels):
      return False
    m = self.size_multiple
    return size_buckets.bucket_shape(h, w, m, self.bucket_steps) != (
        size_buckets.round_up(h, m), size_buckets.round_up(w, m))

  @property
  def takes_noise_map(self) -> bool:
    return bool(self.config.model.get('noise_map', False))

  @property
  def takes_xray_law(self) -> bool:
    """Whether the model was trained told X-ray noise's own law."""
    return self.takes_noise_map and (
        self.config.get('noise', {}).get('xray_law_fraction', 0.0) > 0)

  @property
  def takes_correlation(self) -> bool:
    """Whether the model is told the noise's spatial correlation."""
    return models.noise_channels(self.config) >= 2

  def noise_params(self, noise_levels: Optional[Sequence[NoiseEstimate]],
                   count: int) -> Tuple[np.ndarray, ...]:
    """What the model is told of `count` images' noise, as `forward` takes
    it: (a, b, correlation, X-ray dose, strength factor), each [count]."""
    a, b, rho, dose = _variance_params(noise_levels, count,
                                       self.takes_xray_law)
    if self.takes_noise_map and self.target_noise_sigma > 0:
      b = b + np.float32((self.target_noise_sigma / 255.0)**2)
    return a, b, rho, dose, self.strength_factors(noise_levels, count)

  def __call__(self, images: np.ndarray,
               noise_levels: Optional[Sequence[NoiseEstimate]] = None,
               valid: Optional[np.ndarray] = None,
               margin: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Denoises [B, H, W, 1] images; `noise_levels` one per image (or None).

    Models with a noise map estimate each image's noise when not told.
    `valid`: int [rows, cols] of the images inside larger inputs, as
    `size_buckets.pad` makes them (`takes_valid` models only), and
    `margin` its static bound (`size_buckets.margins`); the output has
    the inputs' size.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1:
      raise errors.UserError(f'expected images shaped [B, H, W, 1], got '
                             f'{images.shape}')
    if valid is not None and not self.takes_valid:
      raise errors.UserError(f'model {self.name!r} takes no valid region')
    if self.fixed_size and images.shape[1:3] != (self.fixed_size,) * 2:
      raise errors.UserError(
          f'model {self.name!r} takes {self.fixed_size}x{self.fixed_size} '
          f'images, got {images.shape[1]}x{images.shape[2]}; tile the image '
          '(denoise_image does) or use a U-Net')
    if self.takes_noise_map and noise_levels is None:
      noise_levels = [noise_estimation.estimate_noise(i[..., 0])
                      for i in images]
    params = self.noise_params(noise_levels, len(images))
    at_full = bool(np.all(params[-1] >= 1.0))
    apply = self._applies[self.precision_for(noise_levels)]
    outputs = []
    for start in range(0, len(images), self.batch_size):
      stop = start + self.batch_size
      size = (self.batch_size if len(images) > self.batch_size else
              len(images))
      batch, n = batching.pad_batch(images[start:stop], size)
      batch_params = tuple(batching.pad_batch(p[start:stop], size)[0]
                           for p in params)
      outputs.append(np.asarray(apply(
          self.variables, batch, batch_params,
          valid is None and self._ensemble(batch), at_full, valid,
          margin))[:n])
    return np.concatenate(outputs) if outputs else images.copy()


def dihedral(images: jax.Array, k: int) -> jax.Array:
  """The k-th (0-7) of the 8 flips / transpositions of [B, H, W, C] images."""
  if k & 4:
    images = jnp.swapaxes(images, 1, 2)
  if k & 1:
    images = images[:, ::-1]
  if k & 2:
    images = images[:, :, ::-1]
  return images


def _undo_dihedral(images: jax.Array, k: int) -> jax.Array:
  if k & 2:
    images = images[:, :, ::-1]
  if k & 1:
    images = images[:, ::-1]
  if k & 4:
    images = jnp.swapaxes(images, 1, 2)
  return images


def _variance_params(levels: Optional[Sequence[NoiseEstimate]], count: int,
                     xray_law: bool = False) -> Tuple[np.ndarray, ...]:
  """(a, b, correlation, X-ray dose) per image, from their noise estimates.

  An X-ray estimate is told as its law to a model trained on it
  (`xray_law`), else as the line beside it (a, b): what such a model was
  told in training.
  """
  if levels is None:
    return tuple(np.zeros(count, np.float32) for _ in range(4))
  if len(levels) != count:
    raise ValueError(f'{len(levels)} noise levels for {count} images')
  dose = np.array([l.xray_dose for l in levels], np.float32)
  if not xray_law:
    dose = np.zeros_like(dose)
  law = dose > 0
  return (np.where(law, 0.0, [l.a for l in levels]).astype(np.float32),
          np.where(law, 0.0, [l.b for l in levels]).astype(np.float32),
          np.array([l.correlation for l in levels], np.float32), dose)


# ---------------------------------------------------------------- loading


def _abstract_state(config: ml_collections.ConfigDict) -> Any:
  """The shapes of a fresh training state of `config` (nothing computed)."""
  # Training's state and orbax are loaded only for a workdir's model: the
  # shipped model's path starts without them (tests/structure_test.py).
  from xdn.workdir import state as state_lib  # pylint: disable=g-import-not-at-top
  model = models.create_model(config)
  size = models.fixed_input_size(config) or config.data.image_size
  return jax.eval_shape(functools.partial(
      state_lib.create_train_state, config, model, jax.random.key(0),
      (size, size, 1)))


def _with_levels(config: ml_collections.ConfigDict,
                 folder: str) -> ml_collections.ConfigDict:
  """`config` with the strength levels calibrated into `folder`, if any."""
  levels = strength_lib.read_levels_file(folder)
  if levels is not None:
    config.unlock()
    if 'inference' not in config:
      config.inference = ml_collections.ConfigDict()
    config.inference.strength_levels = levels
  return config


def load_denoiser(workdir: str, which: str = 'best',
                  precision: str = 'float32',
                  strength: Optional[strength_lib.Strength] = None
                  ) -> Denoiser:
  """The model trained in `workdir`: its best checkpoint (or latest)."""
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  compile_cache.enable()
  config = _with_levels(checkpoints.read_config(workdir), workdir)
  config.model = models.restore_model_config(config.model.to_dict())
  target = flax.serialization.to_state_dict(_abstract_state(config))
  ckpt = checkpoints.Checkpointer(workdir)
  try:
    if which == 'best' and ckpt.latest_step('best') is None:
      which = 'latest'
    restored = ckpt.restore(target, which)
  finally:
    ckpt.close()
  return Denoiser(config, {'params': restored['params'],
                           'batch_stats': restored['batch_stats']},
                  step=int(restored['step']), name=config.model.name,
                  precision=precision, strength=strength)


def load_pretrained(precision: str = 'float32',
                    folder: str = pretrained.FOLDER,
                    strength: Optional[strength_lib.Strength] = None
                    ) -> Denoiser:
  """The denoiser shipped inside xdn (see xdn/pretrained/MODEL_CARD.md),
  or one exported the same way (`xdn-export`) to `folder`.

  `precision`: 'float32', 'bfloat16' or 'auto' (see resolve_precision);
  `strength`: a level or factor of `xdn.inference.strength` (None: the default).
  """
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  compile_cache.enable()
  config, variables, step = pretrained.load(folder)
  config = _with_levels(config, folder)
  name = (pretrained.NAME if folder == pretrained.FOLDER else
          os.path.basename(os.path.normpath(folder)))
  return Denoiser(config, variables, step=step, name=name,
                  precision=precision, strength=strength)


def load(source: str, which: str = 'best', precision: str = 'float32',
         strength: Optional[strength_lib.Strength] = None) -> Denoiser:
  """'pretrained' (the shipped model), an exported model folder, or a
  training workdir (its `which` checkpoint), at `strength`."""
  if source == 'pretrained':
    return load_pretrained(precision, strength=strength)
  if pretrained.available(source):
    return load_pretrained(precision, source, strength)
  return load_denoiser(source, which, precision, strength)


# ----------------------------------------------------------------- tiling


def ramp_window(tile: int, overlap: int) -> np.ndarray:
  """1-D blending weights: linear ramps over `overlap` pixels at each end.

  Never zero, so a pixel covered by a single tile (at the image border) keeps
  that tile's value after normalising by the summed weights.
  """
  i = np.arange(tile, dtype=np.float32) + 0.5
  ramp = np.minimum(i, tile - i) / max(overlap, 1)
  return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def tile_grid(length: int, tile: int, overlap: int,
              align: int = 1) -> Tuple[List[int], int]:
  """Tile starts along one axis, and the padded length they cover.

  Tiles advance by `tile - overlap` rounded down to a multiple of `align`;
  the axis is padded (by less than one stride) so the last tile ends at its
  end, which keeps every tile on the aligned grid.
  """
  stride = max((tile - overlap) // align * align, align)
  steps = max(-(-(length - tile) // stride), 0)
  return [i * stride for i in range(steps + 1)], tile + steps * stride


def denoise_tiled(denoiser: Denoiser, image: np.ndarray, tile: int,
                  overlap: int, batch_size: int = 32, align: int = 1,
                  noise_level: Optional[NoiseEstimate] = None) -> np.ndarray:
  """Denoises a [H, W] image in overlapping `tile` x `tile` tiles.

  The image is mirror-padded up to the tile grid (small images up to one
  tile). Tiles are denoised `batch_size` at a time and blended with
  `ramp_window` weights. Every tile is told the whole image's noise level.
  """
  image = np.asarray(image, np.float32)
  h, w = image.shape
  ys, ph = tile_grid(h, tile, overlap, align)
  xs, pw = tile_grid(w, tile, overlap, align)
  # 'symmetric' also works for 1-pixel images and pads longer than them.
  image = np.pad(image, ((0, ph - h), (0, pw - w)), mode='symmetric')
  window = np.outer(ramp_window(tile, overlap), ramp_window(tile, overlap))
  total = np.zeros((ph, pw), np.float32)
  weight = np.zeros((ph, pw), np.float32)
  corners = [(y, x) for y in ys for x in xs]
  for first in range(0, len(corners), batch_size):
    batch = corners[first:first + batch_size]
    tiles = np.stack([image[y:y + tile, x:x + tile] for y, x in batch])
    # Pad to a power of two: a compiled model then serves every image with
    # a handful of batch shapes instead of one per tile count.
    tiles, _ = batching.pad_batch(
        tiles, batching.next_power_of_two(len(batch), batch_size))
    outputs = np.asarray(_call(denoiser, tiles[..., None], noise_level))[..., 0]
    for (y, x), out in zip(batch, outputs):
      total[y:y + tile, x:x + tile] += window * out
      weight[y:y + tile, x:x + tile] += window
  return (total / weight)[:h, :w]


def _call(denoiser: Denoiser, images: np.ndarray,
          noise_level: Optional[NoiseEstimate]) -> np.ndarray:
  # Any callable images -> images serves (tests use identity functions);
  # only noise-map models are told the level.
  if noise_level is None:
    return denoiser(images)
  return denoiser(images, [noise_level] * len(images))


def denoise_image(denoiser: Denoiser, image: np.ndarray, *, tile: int = 0,
                  overlap: int = -1, batch_size: int = 32,
                  max_pixels: int = MAX_WHOLE_PIXELS,
                  noise_level: Optional[NoiseEstimate] = None) -> np.ndarray:
  """Denoises one [H, W] float image in [0, 1], whole or in tiles.

  A model with a noise map is told `noise_level`, or else the level
  estimated from the whole image (logged).
  """
  image = np.asarray(image, np.float32)
  if image.ndim != 2:
    raise errors.UserError(
        f'expected a 2-D [H, W] image, got shape {image.shape}')
  if getattr(denoiser, 'takes_noise_map', False) and noise_level is None:
    noise_level = noise_estimation.estimate_noise(image)
    logging.info('Estimated noise: %s', noise_level.describe())
  fixed = getattr(denoiser, 'fixed_size', None)
  if fixed is None and tile <= 0 and image.size <= max_pixels:
    if getattr(denoiser, 'bucketed', lambda shape: False)(image.shape):
      # One compiled program per bucket, not per size; same output.
      padded, valid = size_buckets.pad(image[None, ..., None],
                                       denoiser.size_multiple,
                                       denoiser.bucket_steps)
      levels = None if noise_level is None else [noise_level]
      out = denoiser(padded, levels, valid, size_buckets.margins(
          padded.shape, denoiser.size_multiple, denoiser.bucket_steps))
    else:
      out = np.asarray(_call(denoiser, image[None, ..., None], noise_level))
    return out[0, :image.shape[0], :image.shape[1], 0]
  if fixed is not None:
    if tile > 0 and tile != fixed:
      raise errors.UserError(f'model {denoiser.name!r} takes {fixed}x{fixed} '
                             f'tiles; drop --tile or set --tile={fixed}')
    tile, align = fixed, 1
    overlap = tile // 4 if overlap < 0 else overlap
  else:
    tile = tile if tile > 0 else TILE
    align = getattr(denoiser, 'size_multiple', 1)
    overlap = OVERLAP if overlap < 0 else overlap
  if overlap >= tile:
    raise errors.UserError(f'--overlap={overlap} must be smaller than the '
                           f'tile ({tile})')
  return denoise_tiled(denoiser, image, tile, overlap, batch_size, align,
                       noise_level)
