r"""`xdn-bench`: prints one JSON object with xdn's training or inference speed.

  xdn-bench [--models=autoencoder,vae,seed_skip,unet] [--batch_size=128] \
      [--repeats=5] [--reference] [--data_dir=DIR]
  xdn-bench --mode=inference|folder|beam ...

`--mode=train` (the default) times train steps and the input pipeline;
`--reference` also times the original Keras models (TensorFlow, same
process, same shapes) and adds `ratio` = xdn / keras train images/s.
`--mode=inference` times denoising in-process (xdn.bench.denoise_speed),
`--mode=folder` whole xdn-denoise processes on a folder, optionally against
another checkout (xdn.bench.folder_speed), `--mode=beam` xdn-beam
(xdn.bench.beam_speed). The old spellings --inference, --folder and --beam
still select those modes.
"""

import json
from typing import Sequence

from absl import app
from absl import flags

from xdn.cli import shared
from xdn import errors
from xdn import models

FLAGS = flags.FLAGS
MODES = ('train', 'inference', 'folder', 'beam')


def define_flags() -> None:
  flags.DEFINE_enum('mode', 'train', list(MODES), 'What to time: train '
                    'steps and the input pipeline; denoising in-process '
                    '(inference); whole xdn-denoise processes on a folder of '
                    'synthetic radiographs, first run (empty compilation '
                    'cache) and later runs (folder); xdn-beam against '
                    'xdn-denoise (beam; needs the beam extra).')
  for mode in MODES[1:]:  # The old spellings of --mode.
    flags.DEFINE_bool(mode, False, f'The same as --mode={mode}.')
  flags.DEFINE_list('models', list(models.MODELS), 'train: models to time.')
  flags.DEFINE_integer('batch_size', 128, 'train: images per step.')
  flags.DEFINE_integer('repeats', 5, 'Timed steps or calls (median).')
  flags.DEFINE_integer('warmup', 2, 'train: untimed steps after compiling.')
  flags.DEFINE_integer('pipeline_steps', 100,
                       'train: timed input-pipeline batches.')
  flags.DEFINE_bool('reference', False, 'train: also time the Keras '
                    'originals.')
  flags.DEFINE_string('data_dir', None,
                      "train: TFDS data_dir (default: the config's).")
  flags.DEFINE_list('sizes', ['1024', '2048'], 'inference: image sizes '
                    '(square).')
  shared.define_precision('float32')
  flags.DEFINE_integer('beam_images', 16, 'beam: radiographs of mixed sizes '
                       '(512^2 to 2048^2).')
  flags.DEFINE_list('beam_workers', ['1', '2', '4'], 'beam: worker process '
                    'counts of the DirectRunner.')
  flags.DEFINE_list('beam_dask_workers', [], 'beam: also on a local Dask '
                    'cluster of this many worker processes each, e.g. 1,2 '
                    '(needs the dask extra).')
  flags.DEFINE_integer('folder_images', 16, 'folder: radiographs, cycling '
                       'through the sizes.')
  flags.DEFINE_list('folder_sizes', ['1024', '1760x2140', '2048', '2500'],
                    'folder: sizes, N or HxW.')
  flags.DEFINE_integer('rounds', 3, 'folder: runs after the first.')
  flags.DEFINE_list('denoise_flags', [], 'folder: flags for every '
                    'xdn-denoise run, e.g. --precision=float32,--strength=full.')
  flags.DEFINE_string('baseline', None, 'folder: another xdn checkout (e.g. a '
                      'git worktree of an older commit) to time the same way, '
                      'interleaved, with its outputs compared.')


def mode() -> str:
  """--mode, or the mode an old spelling (--inference, --folder, --beam)
  names."""
  chosen = [m for m in MODES[1:] if FLAGS[m].value]
  if len(chosen) > 1 or (chosen and FLAGS.mode != 'train'):
    raise errors.UserError(f'choose one mode: --mode={FLAGS.mode} and '
                           f'{["--" + m for m in chosen]} disagree')
  return chosen[0] if chosen else FLAGS.mode


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  what = mode()
  if what == 'folder':  # Whole processes, configured as a user's are.
    from xdn.bench import folder_speed  # pylint: disable=g-import-not-at-top
    try:
      results = folder_speed.benchmark(
          FLAGS.folder_images, folder_speed.parse_sizes(FLAGS.folder_sizes),
          FLAGS.rounds, FLAGS.denoise_flags, FLAGS.baseline)
    except ValueError as e:
      raise errors.UserError(str(e)) from None
    print(json.dumps(results))
    print(folder_speed.markdown(results))
    return
  from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
  # As the commands that run each do: time what users run.
  xla_flags.configure_xla_cpu(training=what == 'train')
  if what == 'beam':
    errors.require('apache_beam', 'beam', 'xdn-bench --mode=beam',
                   'apache-beam')
    from xdn.bench import beam_speed  # pylint: disable=g-import-not-at-top
    if FLAGS.beam_dask_workers:
      errors.require('distributed', 'dask', 'xdn-bench --beam_dask_workers',
                     'apache-beam[dask]')
    results = beam_speed.benchmark(
        FLAGS.beam_images, [int(n) for n in FLAGS.beam_workers],
        dask_workers=[int(n) for n in FLAGS.beam_dask_workers])
    print(json.dumps(results))
    print(beam_speed.markdown(results))
    return
  if what == 'inference':
    from xdn.bench import denoise_speed  # pylint: disable=g-import-not-at-top
    try:
      results = denoise_speed.benchmark([int(s) for s in FLAGS.sizes],
                                        FLAGS.repeats, FLAGS.precision)
    except ValueError as e:
      raise errors.UserError(str(e)) from None
    print(json.dumps(results))
    return
  from xdn import bench  # pylint: disable=g-import-not-at-top
  for name in FLAGS.models:
    models.get_spec(name)
  results = bench.benchmark(
      FLAGS.models, batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
      warmup=FLAGS.warmup, pipeline_steps=FLAGS.pipeline_steps,
      reference=FLAGS.reference, data_dir=FLAGS.data_dir)
  print(json.dumps(results))


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-bench)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
