r"""Prints one JSON object with xdn's training and inference speed.

  python -m xdn.bench [--models=autoencoder,vae,seed_skip,unet] \
      [--batch_size=128] [--repeats=5] [--reference] [--data_dir=DIR]

`--reference` also times the original Keras models (TensorFlow, same
process, same shapes) and adds `ratio` = xdn / keras train images/s.
`--inference` times denoising in-process (xdn.bench.denoise_speed),
`--folder` whole xdn-denoise processes on a folder, optionally against
another checkout (xdn.bench.folder_speed), `--beam` xdn-beam
(xdn.bench.beam_speed).
"""

import json

from absl import app
from absl import flags

from xdn import errors
from xdn import models

_MODELS = flags.DEFINE_list('models', list(models.MODELS), 'Models to time.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Images per step.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed steps (median).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps after compiling.')
_PIPELINE_STEPS = flags.DEFINE_integer('pipeline_steps', 100,
                                       'Timed input-pipeline batches.')
_REFERENCE = flags.DEFINE_bool('reference', False,
                               'Also time the Keras originals.')
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'TFDS data_dir (default: the config\'s).')
_INFERENCE = flags.DEFINE_bool('inference', False, 'Time denoising whole '
                               'radiographs with the shipped model instead '
                               '(xdn.bench.denoise_speed).')
_SIZES = flags.DEFINE_list('sizes', ['1024', '2048'], '--inference: image '
                           'sizes (square).')
_BEAM = flags.DEFINE_bool('beam', False, 'Time xdn-beam (DirectRunner, '
                          'multi-process) against xdn-denoise on one folder '
                          'instead (xdn.bench.beam_speed; needs the beam '
                          'extra).')
_BEAM_IMAGES = flags.DEFINE_integer('beam_images', 16, '--beam: radiographs '
                                    'of mixed sizes (512^2 to 2048^2).')
_BEAM_WORKERS = flags.DEFINE_list('beam_workers', ['1', '2', '4'], '--beam: '
                                  'worker process counts.')
_PRECISION = flags.DEFINE_enum('precision', 'float32',
                               ['auto', 'float32', 'bfloat16'],
                               '--inference: compute precision.')
_FOLDER = flags.DEFINE_bool('folder', False, 'Time whole xdn-denoise '
                            'processes on a folder of synthetic radiographs '
                            'instead, first run (empty compilation cache) and '
                            'later runs (xdn.bench.folder_speed).')
_FOLDER_IMAGES = flags.DEFINE_integer('folder_images', 16, '--folder: '
                                      'radiographs, cycling through the sizes.')
_FOLDER_SIZES = flags.DEFINE_list('folder_sizes',
                                  ['1024', '1760x2140', '2048', '2500'],
                                  '--folder: sizes, N or HxW.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, '--folder: runs after the first.')
_DENOISE_FLAGS = flags.DEFINE_list('denoise_flags', [], '--folder: flags for '
                                   'every xdn-denoise run, e.g. '
                                   '--precision=float32,--strength=full.')
_BASELINE = flags.DEFINE_string('baseline', None, '--folder: another xdn '
                                'checkout (e.g. a git worktree of an older '
                                'commit) to time the same way, interleaved, '
                                'with its outputs compared.')


def main(argv):
  del argv
  if _FOLDER.value:  # Whole processes, configured as a user's are.
    from xdn.bench import folder_speed  # pylint: disable=g-import-not-at-top
    try:
      results = folder_speed.benchmark(
          _FOLDER_IMAGES.value, folder_speed.parse_sizes(_FOLDER_SIZES.value),
          _ROUNDS.value, _DENOISE_FLAGS.value, _BASELINE.value)
    except ValueError as e:
      raise SystemExit(f'error: {e}') from None
    print(json.dumps(results))
    print(folder_speed.markdown(results))
    return
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  # As the commands that run each do: time what users run.
  xla_flags.configure_xla_cpu(training=not (_INFERENCE.value or _BEAM.value))
  if _BEAM.value:
    from xdn.bench import beam_speed  # pylint: disable=g-import-not-at-top
    results = beam_speed.benchmark(_BEAM_IMAGES.value,
                                   [int(n) for n in _BEAM_WORKERS.value])
    print(json.dumps(results))
    print(beam_speed.markdown(results))
    return
  if _INFERENCE.value:
    from xdn.bench import denoise_speed  # pylint: disable=g-import-not-at-top
    try:
      results = denoise_speed.benchmark([int(s) for s in _SIZES.value],
                                        _REPEATS.value, _PRECISION.value)
    except (ValueError, errors.UserError) as e:
      raise SystemExit(f'error: {e}') from None
    print(json.dumps(results))
    return
  from xdn import bench  # pylint: disable=g-import-not-at-top
  try:
    for name in _MODELS.value:
      models.get_spec(name)
    results = bench.benchmark(
        _MODELS.value, batch_size=_BATCH_SIZE.value, repeats=_REPEATS.value,
        warmup=_WARMUP.value, pipeline_steps=_PIPELINE_STEPS.value,
        reference=_REFERENCE.value, data_dir=_DATA_DIR.value)
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None
  print(json.dumps(results))


def run():
  """Console entry point `xdn-bench`."""
  app.run(main)


if __name__ == '__main__':
  run()
