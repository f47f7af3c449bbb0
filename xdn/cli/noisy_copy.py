r"""xdn-noisy-copy: a noisy-only copy of a clean set (`xdn.data.noisy_copy`).

  xdn-noisy-copy --src=chest_xray_sample --output=data/cxr_g25 \
      --noise=gaussian:25 --seed=0
  xdn-noisy-copy --src=/data/nih1024 --output=data/nih_pg50 \
      --noise=poisson_gaussian:50 --read_noise=2
  xdn-noisy-copy --src=/data/nih1024 --output=data/nih_vendor \
      --noise=correlated_gaussian:15,0.5 --sharpen=1.0
  xdn-noisy-copy --src=chest_xray_sample --output=data/cxr --noise=none
  xdn-noisy-copy --src=/data/nih1024 --output=data/nih20_g75 \
      --noise=gaussian:75 --splits=train --num_images=20

(or `python -m xdn.cli.noisy_copy ...`). `--src` is a folder of radiographs
or `chest_xray_sample`, the embedded set. Every image is corrupted once,
with a key made of `--seed` and its file name, and stored as a 16-bit PNG
under its own name; `--noise=none` copies the files unchanged (with
`--src=chest_xray_sample`, that exports the embedded set as a folder).
"""

import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from xdn.cli import shared
from xdn.data import folder
from xdn.data import noisy_copy
from xdn import errors

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined on use so importing this module adds none."""
  flags.DEFINE_string('src', None, 'Folder of clean radiographs, or '
                      f'{noisy_copy.SAMPLE!r} (the embedded set).')
  shared.define_output(None, 'Folder for the copies (created).')
  shared.define_noise('gaussian:25', 'The noise to add: a noise spec '
                      '(gaussian:25, poisson_gaussian:50, '
                      'correlated_gaussian:15,0.5, speckle:0.2), a preset, '
                      "or 'none' to copy the files unchanged.")
  flags.DEFINE_float('correlation', None, 'correlated_gaussian / xray: the '
                     "noise's neighbour correlation, for a --noise that "
                     'states none (e.g. --noise=correlated_gaussian:15 '
                     "--correlation=0.5). Default: the spec's, else 0.")
  flags.DEFINE_float('sharpen', 0.0, "A vendor's edge enhancement of the "
                     'noise: n + AMOUNT (n - blur(n)), unsharp masking with '
                     'a Gaussian blur of --sharpen_radius px (0: none).')
  flags.DEFINE_float('sharpen_radius', 2.0, 'Blur width (px) of --sharpen.')
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_list('splits', list(folder.SPLITS), 'Splits to copy.')
  flags.DEFINE_string('split_fractions', '0.8,0.1,0.1', 'Folder --src: its '
                      'patient split (data.split_fractions), for --splits.')
  flags.DEFINE_integer('num_images', 0, 'Copy only the first this many '
                       'images of --splits, by name (0: all).')
  flags.DEFINE_bool('overwrite', False, 'Replace existing files in --output.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.src or not FLAGS.output:
    raise errors.UserError('give --src (a folder or chest_xray_sample) and '
                           '--output')
  # A spec names its correlation after a comma; --correlation is for a
  # spec without one, so the two cannot disagree.
  if FLAGS.correlation is not None and ',' in FLAGS.noise:
    raise errors.UserError(f'--noise={FLAGS.noise} states its correlation; '
                           'drop --correlation or the correlation in --noise')
  for flag, correlation in (('noise', None), ('correlation',
                                               FLAGS.correlation)):
    try:
      noisy_copy.parse_added_noise(FLAGS.noise, correlation)
    except errors.UserError as e:
      raise errors.UserError(f'--{flag}: {e}') from None
  manifest = noisy_copy.make_copy(
      FLAGS.src, FLAGS.output, FLAGS.noise, seed=FLAGS.seed,
      read_noise=FLAGS.read_noise, splits=FLAGS.splits,
      split_fractions=FLAGS.split_fractions, num_images=FLAGS.num_images,
      overwrite=FLAGS.overwrite, correlation=FLAGS.correlation,
      sharpen=FLAGS.sharpen, sharpen_radius=FLAGS.sharpen_radius)
  logging.info('Wrote %d images to %s', manifest['num_images'], FLAGS.output)
  print(f"{manifest['num_images']} images ({manifest['noise']} "
        f"{manifest['level']:g}) in {FLAGS.output}; train on them with "
        f'--config.data.manual_dir={FLAGS.output} '
        f"--config.data.split_fractions={manifest['split_fractions']}",
        file=sys.stdout)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-noisy-copy)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
