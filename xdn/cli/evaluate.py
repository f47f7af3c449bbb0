"""xdn-evaluate: PSNR / SSIM and task-based figures of trained models and
classical baselines on test images with synthetic noise.

  python -m xdn.cli.evaluate --model=runs/ae,runs/vae,runs/unet [--skip_slow]
  xdn-evaluate --model=runs/unet --num_images=50 --out=reports/unet
  xdn-evaluate --pretrained --folder=scans --split=all --task=fidelity

The flags name the test images, the noise settings, the models and the
baselines; `--task` picks one of the evaluation tasks of
`xdn.evaluation.tasks` (the PSNR table by default), which writes its files
to `--out` (default: the first workdir).
"""

import os
from typing import List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from xdn.cli import shared
from xdn import errors
from xdn.evaluation import baselines
from xdn.evaluation import calibration
from xdn.evaluation import images
from xdn.evaluation import methods
from xdn.evaluation import settings as settings_lib
from xdn.evaluation import tasks
from xdn import inference
from xdn.inference import strength
from xdn.noise import spec
from xdn.noise import synthetic as noise

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined on use so importing this module adds none."""
  shared.define_model(multi=True)
  flags.DEFINE_bool('pretrained', False, 'Add the model shipped with xdn as '
                    'a column (as --model=pretrained).')
  flags.DEFINE_string('folder', None, 'Evaluate on a folder of radiographs '
                      '(PNG/JPEG/TIFF/DICOM, any size, denoised whole or '
                      'in tiles) instead of a TFDS split: its --split '
                      "('train', 'validation', 'test' by patient as in "
                      "training, or 'all').")
  config_flags.DEFINE_config_file(
      'config', None, 'Optional config file whose `data` section chooses the '
      'test images (default: the first workdir\'s saved config).',
      lock_config=False)
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir override (where '
                      'chest_xray_sample is built or found).')
  flags.DEFINE_string('split_fractions', '0.8,0.1,0.1', 'Patient split '
                      'fractions of a --folder (as data.split_fractions).')
  flags.DEFINE_string('split', None, 'Split to evaluate on (default: the '
                      'config\'s data.test_split).')
  shared.define_output(None, 'Folder for the results (default: the first '
                       'workdir).')
  flags.DEFINE_integer('num_images', 0, 'Evaluate at most this many images '
                       '(0: the whole split).')
  flags.DEFINE_list('settings', None, 'Noise settings, each a noise spec '
                    '(xdn.noise.spec): KIND:LEVEL (e.g. gaussian:25, '
                    'poisson:50), KIND:LEVEL,CORRELATION for the correlated '
                    'kinds (correlated_gaussian:25,0.37: pixel std and '
                    'neighbour correlation; xray:400,0.68: quanta per pixel '
                    'unattenuated and the detector correlation) or a preset '
                    'name (e.g. gaussian_medium). Default: the standard grid.')
  flags.DEFINE_list('baselines', None, f'Baselines to run, from '
                    f'{list(baselines.BASELINES)}. Default: all of them; '
                    'bm3d only where it is installed (pip install '
                    '"xdn[baselines]"; its licence is non-commercial).')
  flags.DEFINE_bool('skip_slow', False, 'Leave out the slow baselines '
                    f'({", ".join(baselines.SLOW)}).')
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_bool('oracle_noise', False, 'Tell models with a noise-level '
                    'input the true level (default: they estimate it, blind, '
                    'as xdn-denoise does).')
  flags.DEFINE_string('cache', '', 'Folder that keeps the baselines\' '
                      'outputs (keyed by the noisy images), so reruns skip '
                      'them.')
  flags.DEFINE_float('read_noise', noise.DEFAULT_READ_NOISE,
                     'poisson_gaussian read-noise sigma (0-255 scale).')
  flags.DEFINE_integer('processes', os.cpu_count() or 1, 'Worker processes '
                       'for the slow baselines (1: none).')
  flags.DEFINE_string('figure_setting', 'gaussian:25', 'Noise setting shown '
                      'in the figure (the first setting if not in the grid).')
  flags.DEFINE_integer('figure_image', 0, 'Index of the test image in the '
                       'figure.')
  shared.define_precision('float32', 'Default float32 here, whatever the '
                          'machine, so that tables compare across machines.')
  flags.DEFINE_enum('task', 'denoise', list(tasks.TASKS),
                    "'denoise': PSNR / SSIM per setting; 'lesions': lesion "
                    'fidelity (contrast transfer, NPW and CHO d\'; see '
                    "xdn.evaluation.lesions) of faint inserted lesions; "
                    "'fidelity': the task-based image-quality report "
                    '(PSNR/SSIM, noise std, NPS, TTF, lesions; '
                    'xdn.evaluation.fidelity) per model, strength and '
                    "baseline; 'calibrate': measure the first model's "
                    'strength levels (xdn.evaluation.calibration) and write '
                    'strength_levels.json to --out (and to a training '
                    'workdir, which then uses them).')
  flags.DEFINE_list('strength', None, 'Strength(s) of the models with a '
                    "noise-level input: levels ('low', 'medium', 'high', "
                    "'full': the model's calibrated levels) or factors in "
                    '(0, 2] of the noise the model is told (e.g. 0.8), each '
                    "a column. Default: each model's default level; for "
                    '--task=fidelity every calibrated level.')
  flags.DEFINE_list('calibration_factors',
                    [str(f) for f in calibration.FACTORS],
                    '--task=calibrate: the grid of noise factors measured.')
  flags.DEFINE_list('calibration_extends', [], '--task=calibrate: output '
                    'folders of earlier calibrations of the same images, '
                    'seed, lesions and factors; their other settings count '
                    'as if measured in this run (add settings to a grid '
                    'without measuring it again).')
  flags.DEFINE_list('lesion_sizes', [f'{s:g}' for s in strength.LESION_SIZES],
                    'lesions / fidelity / calibrate: lesion Gaussian std in '
                    "pixels (3-8 px: 3-10 mm nodules at NIH's ~0.42 mm "
                    'pixels).')
  flags.DEFINE_integer('lesions_per_size', strength.LESIONS_PER_SIZE,
                       'lesions / fidelity / calibrate: sites per lesion size '
                       'and image.')
  flags.DEFINE_float('lesion_d_prime', strength.LESION_D_PRIME,
                     "lesions / fidelity / calibrate: each size's contrast "
                     "gives the noisy input this NPW d' (the default: the "
                     "faint lesions the strength levels are defined by).")
  flags.DEFINE_float('pixel_mm', None, "lesions / fidelity: a pixel's size "
                     'on the display in mm, for the NPWE observer\'s eye '
                     "filter. Default: the --folder's DICOM pixel spacing "
                     '(read life size) where it states one; else unknown, '
                     'and the eye filter peaks at 0.2 cycles/px.')
  flags.DEFINE_float('viewing_distance_mm', 500.0, 'lesions / fidelity: the '
                     "reader's distance from the display, for NPWE.")
  flags.DEFINE_integer('figure_crop', 256, 'Larger images are shown as this '
                       'many pixels square around their centre, at full '
                       'resolution (0: whole).')
  shared.define_compile_cache()


def split_workdirs(values: Sequence[str]) -> List[str]:
  """Flattens repeated and comma-separated --model values."""
  return [w.strip() for v in values for w in v.split(',') if w.strip()]


def _numbers(name: str, unit: str = '') -> Tuple[float, ...]:
  try:
    return tuple(float(s) for s in FLAGS[name].value)
  except ValueError:
    raise errors.UserError(f'--{name}={",".join(FLAGS[name].value)}: give '
                           f'numbers{unit}') from None


def _noise_settings() -> Tuple[List[spec.NoiseSpec], spec.NoiseSpec]:
  """The grid (--settings) and the figure's setting (--figure_setting)."""
  try:
    grid = settings_lib.parse(FLAGS.settings)
  except errors.UserError as e:
    raise errors.UserError(f'--settings: {e}') from None
  try:
    return grid, spec.parse(FLAGS.figure_setting, synthesis=True)
  except errors.UserError as e:
    raise errors.UserError(f'--figure_setting: {e}') from None


def _test_images(sources: Sequence[str]) -> images.TestImages:
  if FLAGS.folder:
    return images.from_folder(FLAGS.folder, FLAGS.split, FLAGS.num_images,
                              FLAGS.split_fractions)
  if FLAGS.config is not None:
    data_config = FLAGS.config.data
  elif sources and sources[0] != inference.PRETRAINED:
    data_config = images.saved_data_config(sources[0])
  else:
    raise errors.UserError('name the test images: --folder=DIR, or '
                           '--config=configs/default.py for the embedded '
                           'sample')
  return images.from_config(data_config, FLAGS.split, FLAGS.data_dir,
                            FLAGS.num_images)


def _baselines() -> List[str]:
  names = (baselines.default_names() if FLAGS.baselines is None
           else FLAGS.baselines)
  try:
    return baselines.choose(names, FLAGS.skip_slow)
  except errors.MissingExtra:
    raise
  except errors.UserError as e:
    raise errors.UserError(f'--baselines: {e}') from None


def _pixel_mm() -> Optional[float]:
  if FLAGS.pixel_mm is not None:
    if FLAGS.pixel_mm <= 0:
      raise errors.UserError(f'--pixel_mm={FLAGS.pixel_mm}: a pixel size in '
                             'mm must be > 0')
    return FLAGS.pixel_mm
  if FLAGS.folder and FLAGS.task in ('lesions', 'fidelity'):
    return images.folder_pixel_mm(FLAGS.folder)
  return None


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  from xdn.runtime import compile_cache  # pylint: disable=g-import-not-at-top
  if FLAGS.compile_cache:
    compile_cache.enable()
  else:  # The loaders enable it too.
    os.environ[compile_cache.ENV] = '0'
  from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top  # JAX.
  checkpoints.quiet_orbax_logs()

  sources = split_workdirs(FLAGS.model)
  if not sources and not FLAGS.output and not FLAGS.pretrained:
    raise errors.UserError('give --model (models to evaluate) or, for the '
                           'baselines alone, --out')
  if FLAGS.pretrained and inference.PRETRAINED not in sources:
    sources.append(inference.PRETRAINED)
  noise_settings, figure_setting = _noise_settings()
  baseline_names = _baselines()
  out_dir = FLAGS.output or (sources[0] if sources and
                             sources[0] != inference.PRETRAINED else '')
  if not out_dir:
    raise errors.UserError('name the results folder with --out')
  test = _test_images(sources)
  if not 0 <= FLAGS.figure_image < len(test.clean):
    raise errors.UserError(f'--figure_image={FLAGS.figure_image} but only '
                           f'{len(test.clean)} images are evaluated')
  logging.info('Evaluating on %d images of %s:%s', len(test.clean), test.data,
               test.split)
  models = methods.load_models(sources, FLAGS.checkpoint, FLAGS.precision,
                               None if FLAGS.folder else test.data)
  options = tasks.Options(
      seed=FLAGS.seed, read_noise=FLAGS.read_noise,
      strengths=None if FLAGS.strength is None else tuple(FLAGS.strength),
      oracle_noise=FLAGS.oracle_noise, processes=FLAGS.processes,
      cache_dir=FLAGS.cache, figure_setting=figure_setting,
      figure_image=FLAGS.figure_image, figure_crop=FLAGS.figure_crop,
      lesions=tasks.LesionOptions(_numbers('lesion_sizes', ' (pixels)'),
                                  FLAGS.lesions_per_size,
                                  FLAGS.lesion_d_prime, _pixel_mm(),
                                  FLAGS.viewing_distance_mm),
      calibration_factors=_numbers('calibration_factors'),
      calibration_extends=tuple(FLAGS.calibration_extends))
  inputs = tasks.Inputs(test.clean, test.data, test.split,
                        tuple(noise_settings), tuple(models),
                        tuple(baseline_names), out_dir)
  print(tasks.run(FLAGS.task, inputs, options))


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-evaluate)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
