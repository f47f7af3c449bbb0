"""Writes a trained run's best model into xdn/pretrained (the shipped model).

  xdn-export --workdir=runs/pretrained [--output=xdn/pretrained]
"""

from typing import Sequence

from absl import app
from absl import flags

from xdn.cli import shared
from xdn import pretrained

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'Training workdir to export.')
  flags.mark_flags_as_required(['workdir'])
  shared.define_output(pretrained.FOLDER, 'Folder to write to.')
  flags.DEFINE_enum('checkpoint', 'best', list(shared.CHECKPOINTS),
                    'Which checkpoint.')
  flags.DEFINE_float('target_noise_sigma', 0.0, 'Std (0-255) of the noise '
                     'the training targets hold themselves (measured with '
                     'xdn-noise on the training folder).')
  flags.DEFINE_float('bfloat16_psnr_cost_db', -1.0, 'Largest PSNR cost of '
                     'bfloat16 measured on the held-out settings (< 0: '
                     'not measured).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from xdn.inference import export  # pylint: disable=g-import-not-at-top
  export.export(FLAGS.workdir, FLAGS.output, FLAGS.checkpoint,
                target_noise_sigma=FLAGS.target_noise_sigma,
                bfloat16_psnr_cost_db=FLAGS.bfloat16_psnr_cost_db)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-export)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
