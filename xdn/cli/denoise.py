"""Applies a trained denoiser to your own radiographs: `xdn-denoise`.

  xdn-denoise --out=denoised scan.png scans/ study.dcm
  xdn-denoise --model=runs/unet --noise=gaussian:25 --out=denoised scans/

Inputs are files or folders (searched recursively) of PNG (8 or 16 bit),
JPEG, TIFF, BMP or DICOM, of any size. Colour images are converted to
grayscale. Outputs go to `--output` (alias `--out`) under the same names
(a folder's tree is kept) in the input's bit depth:
  PNG, TIFF, BMP  -> PNG of the same bit depth.
  JPEG            -> 8-bit PNG: re-encoding as JPEG would add compression
                     artefacts to the image just denoised.
  DICOM           -> uncompressed DICOM (Explicit VR Little Endian) with
                     the original metadata, the pixel data replaced (same
                     dtype and Bits Stored), a new SOP Instance UID, a
                     derived series, and the source transfer syntax named
                     in its Derivation Description.

Pixels are scaled to [0, 1] by bit depth (see `xdn.io.images.bit_depth`); for
DICOM by the Bits Stored range after the rescale slope/intercept, and
MONOCHROME1 images are inverted first so bone is bright as in training.

Without --model (alias --workdir) the model shipped inside xdn is used (see
xdn/pretrained/MODEL_CARD.md); it is told each image's noise, estimated from
the image (logged) unless --noise names it. Models made for a fixed size
(the 64x64 seed models) see overlapping tiles blended with a linear ramp;
the U-Net sees whole images up to `--max_pixels`, and larger ones in tiles.
Whole images are padded into size buckets (`--size_buckets`,
xdn.inference.size_buckets), with the outputs of each size alone, so that a
folder of many sizes compiles a few programs; compiled programs are kept in
the user's cache folder (`--compile_cache`). Inputs are never overwritten;
an existing output needs `--overwrite`. A file that cannot be read or
written (for any reason: unreadable, too large, no decoder, a bug) is
reported in one line naming it, and the others are still done; a closing
line lists the failed files and the exit status is 1 if any failed
(`--verbose` logs each failure's traceback). Ctrl-C stops after the current
file (exit status 130); what was written stays.

Flags and `main` only: the work is `xdn.inference.folder`'s.
"""

import os
import sys
from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from xdn.cli import shared
from xdn import errors
from xdn.inference import denoiser as denoiser_lib
from xdn.inference import ensemble
from xdn.inference import folder
from xdn.inference import outputs
from xdn.inference import size_buckets
from xdn.inference import strength as strength_lib
from xdn.inference import tiling
from xdn.inference import told
from xdn.noise.estimation import NoiseEstimate
from xdn import pretrained

FLAGS = flags.FLAGS
# How a user of this command sees a failed file's traceback.
_FAILURE_HINT = 'run with --verbose for the traceback, and '


def define_flags() -> None:
  """The command's flags; defined on use so importing this module adds none."""
  shared.define_output(None, 'Folder for the denoised files (created).')
  shared.define_model()
  shared.define_precision('auto')
  shared.define_strength(
      "Denoising strength, for models with a noise-level input: 'low', "
      "'medium', 'high' or 'full' (each defined by what it keeps: README, "
      '"Strength levels"), or a number in (0, 2], the fraction of the noise '
      f"the model is told. Default: '{strength_lib.DEFAULT}' for a "
      "calibrated model, else 'full'.")
  shared.define_compile_cache()
  shared.define_noise(
      'auto', "For models with a noise-level input (the shipped one): 'auto' "
      "estimates each image's noise and its spatial correlation (logged); "
      'or a noise spec (xdn.noise.spec): gaussian:SIGMA (0-255 scale), '
      'correlated_gaussian:SIGMA,RHO[,RHO_X] (pixel std and neighbour '
      'correlation, along y then x), poisson:DOSE, poisson_gaussian:DOSE '
      '(with --read_noise), xray:N0[,RHO[,RHO_X]].')
  flags.DEFINE_bool('example', False, 'Denoise the example radiograph '
                    'shipped with xdn (a chest PA crop with real detector '
                    'noise) and write its noise report and a before/after '
                    'picture beside the output.')
  flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')
  flags.DEFINE_integer('batch_size', 32, 'Tiles (or images) per model call.')
  flags.DEFINE_integer('tile', 0, "Tile size; 0: the model's fixed size, or "
                       f'{tiling.TILE} for the U-Net.')
  flags.DEFINE_integer('overlap', -1, 'Overlap of neighbouring tiles in '
                       "pixels; -1: a quarter of a fixed-size model's tile, "
                       f'{tiling.OVERLAP} for the U-Net.')
  flags.DEFINE_integer('max_pixels', tiling.MAX_WHOLE_PIXELS, 'U-Net: images '
                       'up to this many pixels are denoised whole, larger '
                       'ones in tiles.')
  flags.DEFINE_integer('size_buckets', size_buckets.STEPS_PER_OCTAVE,
                       'U-Net: whole images are padded to the next of this '
                       'many sizes per octave, so that a folder of many sizes '
                       'compiles a few programs; the outputs are those of '
                       'each size alone (xdn.inference.size_buckets). 0: '
                       'compile each size.')
  flags.DEFINE_integer('ensemble_max_pixels', ensemble.MAX_PIXELS, 'Images of '
                       'at most this many pixels are denoised as the mean '
                       'over their 8 flips/rotations (better, 8x the '
                       'compute); 0: never.')
  flags.DEFINE_bool('adapt', False, 'Before denoising, fine-tune the model '
                    'on the inputs themselves (self-supervised, no clean '
                    'image: xdn.inference.adaptation), keeping the starting '
                    'weights unless held-out parts of the inputs judge the '
                    'fine-tuned ones better.')
  flags.DEFINE_integer('adapt_steps', 300, '--adapt budget in optimiser '
                       'steps (0: no step limit; then set --adapt_seconds).')
  flags.DEFINE_float('adapt_seconds', 0.0, '--adapt budget in seconds (0: '
                     'no time limit); the first limit reached stops it.')
  flags.DEFINE_float('adapt_learning_rate', 2e-5, '--adapt Adam step size.')
  flags.DEFINE_bool('adapt_check_levels', True, '--adapt keeps a checkpoint '
                    'only if every calibrated strength level keeps faint '
                    'lesions added to the held-out tiles as the start did '
                    '(xdn.inference.levels_kept); --noadapt_check_levels '
                    'judges full strength alone (for measuring the check).')
  flags.DEFINE_integer('adapt_max_images', folder.ADAPT_MAX_IMAGES, '--adapt '
                       'learns from at most this many inputs, evenly spread '
                       'over them (bounds memory); all are denoised.')
  flags.DEFINE_string('adapt_save', None, 'Folder to save the adapted model '
                      'in (reuse it with --model=FOLDER).')
  flags.DEFINE_bool('verbose', False, 'Log the traceback of each file that '
                    'fails (always logged at debug level, -v 1).')


def _shipped(model: Optional[str]) -> bool:
  return model is None or model == denoiser_lib.PRETRAINED


def load_model() -> denoiser_lib.Denoiser:
  """The model of --model (a workdir or model folder), or the shipped one,
  with every setting of the flags."""
  if not _shipped(FLAGS.model) and not pretrained.available(FLAGS.model):
    from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
    checkpoints.quiet_orbax_logs()  # Orbax is loaded for workdirs only.
  denoiser = denoiser_lib.load(
      FLAGS.model, FLAGS.checkpoint, FLAGS.precision, FLAGS.strength,
      batch_size=FLAGS.batch_size,
      ensemble_max_pixels=FLAGS.ensemble_max_pixels,
      bucket_steps=FLAGS.size_buckets)
  source = (f'the model shipped with xdn ({pretrained.FOLDER})'
            if _shipped(FLAGS.model) else FLAGS.model)
  logging.info('Model %s (step %d) from %s, %s, strength %s', denoiser.name,
               denoiser.step, source, denoiser.precision,
               denoiser.strength_label)
  return denoiser


def _noise_flag() -> Optional[NoiseEstimate]:
  """--noise as told to a model; None: estimated per image."""
  try:
    return told.parse_noise(FLAGS.noise, FLAGS.read_noise)
  except errors.UserError as e:
    raise errors.UserError(f'--noise: {e}') from None


def _told_noise(denoiser: denoiser_lib.Denoiser,
                noise_level: Optional[NoiseEstimate]
                ) -> Optional[NoiseEstimate]:
  """The noise given, if the model takes it (logged either way)."""
  if noise_level is not None:
    if not denoiser.capabilities.takes_noise_map:
      logging.warning('--noise is ignored: model %s takes no noise level',
                      denoiser.name)
      return None
    logging.info('Noise given: %s', noise_level.describe())
  return noise_level


def _adapt(denoiser: denoiser_lib.Denoiser, inputs: Sequence[str],
           noise_level: Optional[NoiseEstimate]) -> denoiser_lib.Denoiser:
  """--adapt: the denoiser fine-tuned on the inputs (or the start)."""
  from xdn.inference import adaptation  # pylint: disable=g-import-not-at-top
  config = adaptation.default_config()
  config.steps = FLAGS.adapt_steps
  config.seconds = FLAGS.adapt_seconds
  config.learning_rate = FLAGS.adapt_learning_rate
  config.check_levels = FLAGS.adapt_check_levels
  try:
    return folder.adapt_to_files(denoiser, inputs, noise_level,
                                 config=config,
                                 max_images=FLAGS.adapt_max_images,
                                 save_to=FLAGS.adapt_save)
  except errors.UserError as e:
    raise errors.UserError(f'--adapt: {e}') from None


def main(argv: Sequence[str]) -> None:
  inputs = argv[1:]
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.configure_xla_cpu()  # Before the first JAX computation.
  if not FLAGS.compile_cache:
    os.environ['XDN_COMPILE_CACHE'] = '0'
  if FLAGS.example:
    from xdn import examples  # pylint: disable=g-import-not-at-top
    if inputs:
      raise app.UsageError('--example denoises the shipped example; name no '
                           'other inputs')
    inputs = [examples.EXAMPLE]
  if not inputs:
    raise app.UsageError('name the input files or folders, e.g. '
                         'xdn-denoise --output=DIR scan.png')
  if not FLAGS.output:
    raise app.UsageError('--output (or --out) is required: the folder for '
                         'the results')
  if FLAGS.size_buckets < 0:
    raise app.UsageError('--size_buckets must be >= 0 (0: no buckets)')
  noise_level = _noise_flag()  # A bad spec fails before loading the model.
  from xdn.runtime import fast_path  # pylint: disable=g-import-not-at-top
  note = fast_path.slow_path_note()
  if note:
    logging.info(note)
  denoiser = load_model()
  noise_level = _told_noise(denoiser, noise_level)
  if FLAGS.adapt:
    denoiser = _adapt(denoiser, inputs, noise_level)
  try:
    failed = folder.denoise_files(
        denoiser, inputs, FLAGS.output, overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose, tile=FLAGS.tile, overlap=FLAGS.overlap,
        batch_size=FLAGS.batch_size, max_pixels=FLAGS.max_pixels,
        noise_level=noise_level, failure_hint=_FAILURE_HINT)
  except KeyboardInterrupt:
    sys.exit(130)  # The shell's status for Ctrl-C; the summary is logged.
  if failed:
    sys.exit(1)
  if FLAGS.example:
    written = outputs.output_path(FLAGS.output, os.path.basename(inputs[0]),
                                  '.png')
    extras = folder.write_example_extras(inputs[0], written, FLAGS.output,
                                         denoiser)
    print(f'Denoised {written}; noise report and pictures: '
          f'{", ".join(extras)}')


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-denoise)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
