"""The evaluation tasks, a registry looked up by name.

  denoise    the PSNR / SSIM table (`psnr_table`)
  lesions    the fidelity of faint inserted lesions (`lesions`)
  fidelity   the task-based image-quality report (`fidelity`)
  calibrate  measure the first model's strength levels (`calibration`)

Each task is `task(inputs, options) -> str`: it evaluates `Inputs` (test
images, noise settings, models, baselines) as `Options` say, writes its
files to `inputs.out_dir` (through `xdn.io.atomic`) and returns a summary to
print (its Markdown table). A new task is one function under `@register`.
"""

import dataclasses
import multiprocessing
import os
from typing import Any, Callable, Dict, Optional, Tuple

from absl import logging
import numpy as np

from xdn import errors
from xdn.evaluation import baselines
from xdn.evaluation import calibration
from xdn.evaluation import fidelity
from xdn.evaluation import lesions
from xdn.evaluation import methods
from xdn.evaluation import psnr_table
from xdn.evaluation import settings as settings_lib
from xdn import inference
from xdn.inference import strength as strength_lib
from xdn.metrics import observers
from xdn import models as models_lib
from xdn.noise import synthetic as noise


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What a task evaluates."""
  clean: Any  # [N, S, S, 1] in [0, 1], or a list of [H, W, 1] of any sizes.
  data: str  # Where the images came from (a folder or a data set's name).
  split: str
  settings: Tuple[settings_lib.Setting, ...]
  models: Tuple[methods.Model, ...]
  baselines: Tuple[str, ...]  # Keys of `baselines.BASELINES`.
  out_dir: str  # The results folder.


@dataclasses.dataclass(frozen=True)
class LesionOptions:
  """The faint lesions of the lesion, fidelity and calibration tasks."""
  # Gaussian std in pixels; sites per size and image; each size's contrast
  # gives the noisy input this NPW d'. Default: the lesions the strength
  # levels are defined by.
  sizes: Tuple[float, ...] = strength_lib.LESION_SIZES
  per_size: int = strength_lib.LESIONS_PER_SIZE
  d_prime: float = strength_lib.LESION_D_PRIME
  # How the images are read, for the NPWE observer's eye filter: a pixel's
  # size on the display (None: unknown) and the viewing distance.
  pixel_mm: Optional[float] = None
  viewing_distance_mm: float = 500.0

  @property
  def geometry(self) -> observers.EyeGeometry:
    return observers.EyeGeometry(self.pixel_mm, self.viewing_distance_mm)

  def check(self) -> None:
    if not self.sizes or min(self.sizes) <= 0 or self.per_size < 2:
      raise errors.UserError('lesion sizes must be > 0 pixels, with at least '
                             '2 lesions per size')


@dataclasses.dataclass(frozen=True)
class Options:
  """How a task evaluates; each task reads the fields it needs."""
  seed: int = 0  # The noise seed (`settings.noise_key`).
  read_noise: float = noise.DEFAULT_READ_NOISE  # poisson_gaussian, 0-255.
  # Strengths of the models with a noise-level input, each a column
  # (`methods.columns`); None: each model's default (fidelity: every level).
  strengths: Optional[Tuple[str, ...]] = None
  # denoise:
  oracle_noise: bool = False  # Tell models the true noise level.
  processes: int = 1  # Worker processes for the slow baselines.
  cache_dir: str = ''  # Where the slow baselines' outputs are kept.
  figure_setting: Optional[settings_lib.Setting] = None  # None: the first.
  figure_image: int = 0
  figure_crop: int = 256  # Pixels square shown of larger images (0: all).
  # lesions, fidelity, calibrate:
  lesions: LesionOptions = LesionOptions()
  # calibrate: the noise factors measured (at least two > 0, including 1).
  calibration_factors: Tuple[float, ...] = calibration.FACTORS
  # calibrate: output folders of earlier calibrations (same images, seed,
  # lesions, factors) whose other settings count as if measured here.
  calibration_extends: Tuple[str, ...] = ()


Task = Callable[[Inputs, Options], str]
TASKS: Dict[str, Task] = {}


def register(name: str) -> Callable[[Task], Task]:
  """Adds the decorated function to `TASKS` as `name`."""
  def add(task: Task) -> Task:
    TASKS[name] = task
    return task
  return add


def get(name: str) -> Task:
  if name not in TASKS:
    raise errors.UserError(f'unknown evaluation task {name!r}; use one of '
                           f'{list(TASKS)}')
  return TASKS[name]


def run(name: str, inputs: Inputs, options: Options) -> str:
  """Runs task `name`; returns its summary."""
  return get(name)(inputs, options)


def _meta(inputs: Inputs, options: Options) -> Dict[str, Any]:
  return {'data': inputs.data, 'split': inputs.split,
          'num_images': len(inputs.clean), 'seed': options.seed}


def _task_meta(inputs: Inputs, options: Options) -> Dict[str, Any]:
  """`_meta` and the viewing geometry the NPWE observer assumed."""
  return {**_meta(inputs, options),
          'eye_geometry': options.lesions.geometry.describe()}


def _lesion_arguments(options: Options) -> Dict[str, Any]:
  """The keyword arguments of the lesion measurements every task shares."""
  return dict(sizes=options.lesions.sizes, per_size=options.lesions.per_size,
              target_d_prime=options.lesions.d_prime, seed=options.seed,
              geometry=options.lesions.geometry)


def _images_2d(inputs: Inputs):
  return [np.asarray(c)[..., 0] for c in inputs.clean]


def _make_noisy(options: Options):
  """(image [H, W], setting, index) -> its noisy image, as the table's."""
  return lambda image, setting, index: settings_lib.noisy_image(
      image[..., None], setting, options.seed, index,
      options.read_noise)[..., 0]


@register('denoise')
def denoise(inputs: Inputs, options: Options) -> str:
  """The PSNR / SSIM table (`psnr_table`)."""
  columns = methods.columns(inputs.models, options.strengths)
  pool = None
  if options.processes > 1 and any(b in baselines.SLOW
                                   for b in inputs.baselines):
    # 'spawn': forking a process that has started JAX's threads can deadlock.
    pool = multiprocessing.get_context('spawn').Pool(options.processes)
  try:
    evaluation = psnr_table.evaluate(
        inputs.clean, inputs.settings, {c.name: c.denoiser for c in columns},
        inputs.baselines, seed=options.seed, read_noise=options.read_noise,
        pool=pool, figure_setting=options.figure_setting,
        figure_image=options.figure_image, cache_dir=options.cache_dir,
        oracle_noise=options.oracle_noise)
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  meta = {**_meta(inputs, options), 'read_noise': options.read_noise,
          'noise_told_to_models': options.oracle_noise,
          'models': [{'column': c.name, 'workdir': c.model.source,
                      'name': c.model.denoiser.name,
                      'step': c.model.denoiser.step,
                      'checkpoint': c.model.checkpoint} for c in columns],
          'baselines': list(inputs.baselines)}
  table = psnr_table.write_results(inputs.out_dir, evaluation, meta)
  psnr_table.save_figure(os.path.join(inputs.out_dir, 'eval_figure.png'),
                         evaluation, options.figure_crop)
  logging.info('Wrote %s to %s', ', '.join(psnr_table.RESULT_FILES),
               inputs.out_dir)
  return table


@register('lesions')
def lesion_fidelity(inputs: Inputs, options: Options) -> str:
  """Contrast transfer, NPW and CHO d' of faint lesions (`lesions`)."""
  options.lesions.check()
  columns = methods.columns(inputs.models, options.strengths)
  result = lesions.evaluate_lesions(
      _images_2d(inputs), inputs.settings,
      methods.image_methods(columns, inputs.baselines, options.read_noise),
      _make_noisy(options), **_lesion_arguments(options))
  return lesions.write(inputs.out_dir, result, _task_meta(inputs, options))


@register('fidelity')
def fidelity_report(inputs: Inputs, options: Options) -> str:
  """The task-based image-quality report (`fidelity`), each model at
  every level it has unless told its strengths."""
  options.lesions.check()
  columns = methods.columns(inputs.models, options.strengths
                            if options.strengths is not None
                            else methods.EVERY_LEVEL)
  result = fidelity.evaluate_fidelity(
      _images_2d(inputs), inputs.settings,
      methods.image_methods(columns, inputs.baselines, options.read_noise),
      _make_noisy(options), **_lesion_arguments(options))
  meta = {**_task_meta(inputs, options),
          'strengths': {c.name: getattr(c.denoiser, 'strength_label', '')
                        for c in columns}}
  table = fidelity.write(inputs.out_dir, result, meta)
  logging.info('Wrote fidelity_results.md/.json, fidelity_frontier.png and '
               'fidelity_nps.png to %s', inputs.out_dir)
  return table


@register('calibrate')
def calibrate(inputs: Inputs, options: Options) -> str:
  """Measures the first model's strength levels (`calibration`) and writes
  them to the results folder and, for a training workdir, to the workdir,
  whose model then uses them."""
  if not inputs.models:
    raise errors.UserError('calibration needs a model: name one')
  model = inputs.models[0]
  if not models_lib.capabilities_of(model.denoiser).takes_noise_map:
    raise errors.UserError(f'model {model.label!r} takes no noise level: it '
                           'has no strength levels to calibrate')
  factors = sorted(set(options.calibration_factors))
  if len(factors) < 2 or factors[0] <= 0 or 1.0 not in factors:
    raise errors.UserError(f'calibration factors {factors}: give at least '
                           'two factors > 0, including 1')
  options.lesions.check()
  meta = {**_task_meta(inputs, options), 'model': model.label,
          'step': model.denoiser.step,
          'settings': [s.label for s in inputs.settings],
          'setting_specs': [settings_lib.as_json(s) for s in inputs.settings],
          'read_noise': options.read_noise, 'factors': factors,
          'sizes': list(options.lesions.sizes),
          'per_size': options.lesions.per_size,
          'target_d_prime': options.lesions.d_prime}
  earlier = [pair for folder in options.calibration_extends
             for pair in calibration.earlier_rows(folder, inputs.settings,
                                                  meta)]
  result = calibration.calibrate(
      _images_2d(inputs), inputs.settings, model.denoiser,
      _make_noisy(options),
      lambda d, n, told: methods.apply_model(d, n[None, ..., None],
                                             told)[0, ..., 0],
      factors=factors, earlier=earlier, **_lesion_arguments(options))
  meta['settings'] += [s.label for s, _ in earlier]
  meta['setting_specs'] += [settings_lib.as_json(s) for s, _ in earlier]
  meta['extends'] = list(options.calibration_extends)
  table = calibration.write(inputs.out_dir, result, meta)
  if model.source != inference.PRETRAINED and os.path.isdir(
      os.path.join(model.source, 'checkpoints')):
    calibration.write(model.source, result, meta)
    logging.info('Wrote the levels to %s: its model now uses them',
                 model.source)
  return table
