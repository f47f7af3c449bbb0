"""Trained models ready to apply: the `Denoiser` and its loaders.

  denoiser = load_pretrained()            # The model shipped inside xdn.
  denoiser = load_denoiser('runs/unet')   # A model trained with run.py.
  clean = denoise_image(denoiser, noisy)  # [H, W] in [0, 1], any size.

A `Denoiser` is frozen: built with everything it needs, and varied with
`dataclasses.replace` (or `at_strength`), which shares the compiled
programs. Its parts each have a home: what the model takes
(`xdn.models.Capabilities`, declared by its registry entry), what it is
told of the noise (`xdn.inference.told`: given, or estimated from each
image) and of the strength (`xdn.inference.strength`), how it computes
(`xdn.inference.precision`, `xdn.inference.compiled`, the x8
`xdn.inference.ensemble`), and whole images (`xdn.inference.tiling`).

Used by `xdn-evaluate` and `xdn-denoise`. Imports JAX and flax, but neither
training code nor TensorFlow (nor orbax and optax, until a training
workdir's model is loaded), so it starts quickly.
"""

import dataclasses
import functools
import os
from typing import Any, Callable, Optional, Sequence, Tuple

import flax
import jax
import ml_collections
import numpy as np

from xdn import errors
from xdn.inference import compiled
from xdn.inference import ensemble
from xdn.inference import precision as precision_lib
from xdn.inference import size_buckets
from xdn.inference import strength as strength_lib
from xdn.inference import told as told_lib
from xdn import models
from xdn.noise.estimation import NoiseEstimate
from xdn import pretrained
from xdn.runtime import compile_cache
from xdn.runtime import xla_flags
# Kept importable from here, their home before the split (callers use
# `xdn.inference` or the modules named).
from xdn.inference.ensemble import dihedral  # pylint: disable=unused-import
from xdn.inference.precision import PRECISIONS  # pylint: disable=unused-import
from xdn.inference.precision import resolve_precision  # pylint: disable=unused-import
from xdn.inference.tiling import denoise_image  # pylint: disable=unused-import
from xdn.inference.tiling import denoise_tiled  # pylint: disable=unused-import
from xdn.inference.tiling import MAX_WHOLE_PIXELS
from xdn.inference.tiling import OVERLAP  # pylint: disable=unused-import
from xdn.inference.tiling import ramp_window  # pylint: disable=unused-import
from xdn.inference.tiling import TILE  # pylint: disable=unused-import
from xdn.inference.tiling import tile_grid  # pylint: disable=unused-import


@dataclasses.dataclass(frozen=True, eq=False)
class Denoiser:
  """Applies a model to [B, H, W, 1] float32 images in [0, 1]."""
  config: ml_collections.ConfigDict
  variables: Any
  step: int
  name: str
  batch_size: int = 32  # Images per compiled call (bounds memory).
  # Images of at most this many pixels are denoised as the mean over their
  # 8 flips and 90-degree rotations (`xdn.inference.ensemble`). 0: never.
  ensemble_max_pixels: int = ensemble.MAX_PIXELS
  # The noise std (0-255) of the model's own training targets: detector
  # noise that the "clean" radiographs it learnt from already hold, which
  # it therefore takes for anatomy. Added in quadrature to the noise it is
  # told, so that noise as weak as that is still removed. None: the
  # config's `inference.target_noise_sigma` (0: none).
  target_noise_sigma: Optional[float] = None
  # Compute precision: 'float32', 'bfloat16' or 'auto'
  # (`precision.resolve_precision`; 'auto' may stay, deciding per call).
  # Outputs are float32 in [0, 1] either way.
  precision: str = 'float32'
  # A level of `xdn.inference.strength` ('low', 'medium', 'high', 'full')
  # or a factor on the noise the model is told; None: the model's default
  # (`strength.default_for`: 'medium' once calibrated, else 'full').
  strength: Optional[strength_lib.Strength] = None
  # Whole images are padded into size buckets of this many sizes per
  # octave (`xdn.inference.size_buckets`), so that a folder of many sizes
  # compiles a few programs; outputs as without. 0: each size as it is.
  bucket_steps: int = size_buckets.STEPS_PER_OCTAVE
  # The compiled programs of `config`, shared by the variants `replace`
  # makes; None: made here.
  programs: Optional[compiled.Programs] = dataclasses.field(
      default=None, repr=False)
  # Derived from the fields above, never passed:
  capabilities: models.Capabilities = dataclasses.field(init=False)
  strength_factor: float = dataclasses.field(init=False)  # For white noise.

  def __post_init__(self):
    derive = functools.partial(object.__setattr__, self)
    inference_config = self.config.get('inference', {})
    derive('capabilities', models.capabilities(self.config))
    if self.target_noise_sigma is None or self.target_noise_sigma < 0:
      derive('target_noise_sigma',
             float(inference_config.get('target_noise_sigma', 0.0)))
    factor = strength_lib.factor(self.strength, inference_config, self.name)
    if factor != 1.0 and not self.capabilities.takes_noise_map:
      raise errors.UserError(
          f'model {self.name!r} takes no noise level, so its strength cannot '
          "be set; use strength 'full' (or a model with a noise map)")
    derive('strength', strength_lib.default_for(inference_config)
           if self.strength is None else strength_lib.parse(self.strength))
    derive('strength_factor', factor)
    derive('precision',
           precision_lib.resolve_precision(self.precision, self.config))
    if self.bucket_steps < 0:
      raise errors.UserError(f'size buckets: {self.bucket_steps} steps per '
                             'octave; use >= 0 (0: no buckets)')
    if self.programs is None or self.programs.config is not self.config:
      derive('programs', compiled.Programs(self.config))

  # ------------------------------------------------------------- variants

  def at_strength(self, strength: Optional[strength_lib.Strength]
                  ) -> 'Denoiser':
    """A copy at another strength, sharing weights and compiled code."""
    return dataclasses.replace(self, strength=strength)

  @property
  def strength_label(self) -> str:
    """The strength for logs and tables, e.g. 'medium (s 0.78)'."""
    return strength_lib.describe(self.strength,
                                 self.config.get('inference', {}))

  # Shorthands of `capabilities` (what callers read most).
  @property
  def fixed_size(self) -> Optional[int]:
    return self.capabilities.fixed_size

  @property
  def size_multiple(self) -> int:
    return self.capabilities.size_multiple

  @property
  def takes_noise_map(self) -> bool:
    return self.capabilities.takes_noise_map

  # ------------------------------------------------------------ computing

  def forward(self, dtype: str = 'float32') -> Callable:
    """The model as a pure, differentiable function (`compiled.forward`)."""
    return compiled.forward(self.config, dtype)

  def bucketed(self, image_shape: Sequence[int]) -> bool:
    """Whether a whole [H, W] image is denoised in its size bucket: not
    when its size (padded to `size_multiple`) is a bucket's own, which is
    then compiled as it is (no masks to compute)."""
    h, w = image_shape[:2]
    if not (self.bucket_steps > 0 and self.capabilities.takes_valid and
            h * w > self.ensemble_max_pixels):
      return False
    m = self.size_multiple
    return size_buckets.bucket_shape(h, w, m, self.bucket_steps) != (
        size_buckets.round_up(h, m), size_buckets.round_up(w, m))

  def precision_for(self, noise_levels: Optional[Sequence[NoiseEstimate]]
                    ) -> str:
    """The compute precision of one call (`precision.for_call`)."""
    return precision_lib.for_call(self.precision, self.config, noise_levels)

  def strength_factors(self, noise_levels: Optional[Sequence[NoiseEstimate]],
                       count: int) -> np.ndarray:
    """[count] factors: a calibrated level is read at each image's
    estimated noise (its correlation and level)."""
    return strength_lib.factors(
        self.strength, self.config.get('inference', {}), self.name,
        noise_levels, count)

  def noise_params(self, noise_levels: Optional[Sequence[NoiseEstimate]],
                   count: int) -> told_lib.Params:
    """What the model is told of `count` images' noise, as `forward` takes
    it: (a, b, correlation, X-ray dose, strength factor), each [count]."""
    return told_lib.noise_params(
        noise_levels, count, self.capabilities, self.target_noise_sigma,
        self.strength_factors(noise_levels, count))

  def precompile(self, image_shape: Sequence[int],
                 max_pixels: int = MAX_WHOLE_PIXELS) -> bool:
    """Compiles, ahead of its call, the program `denoise_image` runs on a
    whole [H, W] image (in the precision Gaussian noise gets), so that a
    caller can overlap compiling with other work, such as the image's
    noise estimate: the call then finds it in JAX's persistent cache
    (`xdn.runtime.compile_cache`). Only with that cache on; returns whether
    it compiled, and never raises (the call would compile as usual)."""
    h, w = image_shape[:2]
    if (not compiled.precompile_wanted() or self.fixed_size is not None or
        h * w > max_pixels):
      return False
    margin = None
    if self.bucketed((h, w)):
      m = self.size_multiple
      h, w = size_buckets.bucket_shape(h, w, m, self.bucket_steps)
      margin = size_buckets.margins((1, h, w, 1), m, self.bucket_steps)
    with_ensemble = margin is None and ensemble.applies(
        None, h, w, self.ensemble_max_pixels)
    return self.programs.precompile(
        (image_shape[0], image_shape[1], max_pixels, self.bucket_steps,
         self.precision, self.strength_factor, with_ensemble),
        precision_lib.for_kinds(self.precision, self.config, ['gaussian']),
        with_ensemble, self.variables, (h, w), self.strength_factor >= 1.0,
        margin)

  def __call__(self, images: np.ndarray,
               noise_levels: Optional[Sequence[NoiseEstimate]] = None,
               valid: Optional[np.ndarray] = None,
               margin: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Denoises [B, H, W, 1] images; `noise_levels` one per image (or None).

    A model told its noise is told each image's estimate unless given
    (`told.noise_for_each`). `valid`: int [rows, cols] of the images inside
    larger inputs, as `size_buckets.pad` makes them (`takes_valid` models
    only), and `margin` its static bound (`size_buckets.margins`); the
    output has the inputs' size.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1:
      raise errors.UserError(f'expected images shaped [B, H, W, 1], got '
                             f'{images.shape}')
    fixed = self.fixed_size
    if valid is not None and not self.capabilities.takes_valid:
      raise errors.UserError(f'model {self.name!r} takes no valid region')
    if fixed and images.shape[1:3] != (fixed, fixed):
      raise errors.UserError(
          f'model {self.name!r} takes {fixed}x{fixed} images, got '
          f'{images.shape[1]}x{images.shape[2]}; tile the image '
          '(denoise_image does) or use a U-Net')
    noise_levels = told_lib.noise_for_each(self.capabilities, images[..., 0],
                                           noise_levels)
    params = self.noise_params(noise_levels, len(images))
    with_ensemble = valid is None and ensemble.applies(
        fixed, images.shape[1], images.shape[2], self.ensemble_max_pixels)
    program = self.programs.get(self.precision_for(noise_levels),
                                with_ensemble)
    return compiled.apply_batches(
        program, self.variables, images, params, self.batch_size,
        bool(np.all(params[-1] >= 1.0)), valid, margin)


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
                  strength: Optional[strength_lib.Strength] = None,
                  **options: Any) -> Denoiser:
  """The model trained in `workdir`: its best checkpoint (or latest).
  `options`: the other fields of `Denoiser` (batch_size, ...)."""
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
                  precision=precision, strength=strength, **options)


def load_pretrained(precision: str = 'float32',
                    folder: str = pretrained.FOLDER,
                    strength: Optional[strength_lib.Strength] = None,
                    **options: Any) -> Denoiser:
  """The denoiser shipped inside xdn (see xdn/pretrained/MODEL_CARD.md),
  or one exported the same way (`xdn-export`) to `folder`.

  `precision`: 'float32', 'bfloat16' or 'auto' (see resolve_precision);
  `strength`: a level or factor of `xdn.inference.strength` (None: the
  default); `options`: the other fields of `Denoiser` (batch_size, ...).
  """
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  compile_cache.enable()
  config, variables, step = pretrained.load(folder)
  config = _with_levels(config, folder)
  name = (pretrained.NAME if folder == pretrained.FOLDER else
          os.path.basename(os.path.normpath(folder)))
  return Denoiser(config, variables, step=step, name=name,
                  precision=precision, strength=strength, **options)


PRETRAINED = 'pretrained'  # `load`'s name of the model shipped inside xdn.


def load(source: Optional[str] = PRETRAINED, which: str = 'best',
         precision: str = 'float32',
         strength: Optional[strength_lib.Strength] = None,
         **options: Any) -> Denoiser:
  """'pretrained' or None (the shipped model), an exported model folder, or
  a training workdir (its `which` checkpoint), at `strength`; `options`:
  the other fields of `Denoiser` (batch_size, ...)."""
  if source is None or source == PRETRAINED:
    return load_pretrained(precision, strength=strength, **options)
  if pretrained.available(source):
    return load_pretrained(precision, source, strength, **options)
  return load_denoiser(source, which, precision, strength, **options)
