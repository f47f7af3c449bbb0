"""Plots a run's learning curve: validation PSNR against images seen.

  xdn-curves --workdir=runs/pretrained --output=docs/learning_curve.png
"""

from typing import Sequence

from absl import app
from absl import flags

from xdn.cli import shared

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Training workdir.')
  flags.mark_flags_as_required(['workdir'])
  shared.define_output('learning_curve.png', 'PNG to write.')
  flags.DEFINE_string('tag', 'eval_psnr', 'Scalar to plot.')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from xdn.workdir import curves  # pylint: disable=g-import-not-at-top
  values = curves.plot_learning_curve(FLAGS.workdir, FLAGS.output, FLAGS.tag)
  for step, value in values.items():
    print(f'{step}\t{value:.3f}')


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-curves)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
