"""Writes a trained run's best model into xdn/pretrained (the shipped model).

  python -m xdn.cli.export --workdir=runs/pretrained [--out=xdn/pretrained]

Parameters are stored as float16 (half the size; `--check_images` measures
what that costs in PSNR against float32 on a few images).
"""

import os
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from xdn import errors
from xdn.inference import denoiser as inference
from xdn import pretrained
from xdn.inference import strength

FLAGS = flags.FLAGS


def export(workdir: str, out_dir: str, which: str = 'best', *,
           target_noise_sigma: float = 0.0,
           bfloat16_psnr_cost_db: float = -1.0) -> str:
  """Saves `workdir`'s model (float16) and config to `out_dir`.

  The config's `inference` section records what was measured about the
  model (see `xdn.inference.denoiser.Denoiser`): its training targets' own noise
  std, the PSNR cost of bfloat16 (< 0: not measured; then
  precision='auto' stays float32) and its strength levels, when the
  workdir was calibrated (`xdn-evaluate --task=calibrate`).
  """
  denoiser = inference.load_denoiser(workdir, which, strength='full')
  config = denoiser.config.copy_and_resolve_references()
  config.data.manual_dir = '/path/to/nih1024/images'  # Placeholder.
  levels = strength.calibrated_levels(config.get('inference', {}))
  with config.unlocked():
    config.inference = {'target_noise_sigma': float(target_noise_sigma)}
    if bfloat16_psnr_cost_db >= 0:
      config.inference.bfloat16_psnr_cost_db = float(bfloat16_psnr_cost_db)
    if levels:
      config.inference.strength_levels = {
          k: [list(point) for point in curve] for k, curve in levels.items()}
    else:
      logging.warning('%s has no calibrated strength levels: the exported '
                      "model will default to 'full' (calibrate with "
                      'xdn-evaluate --task=calibrate)', workdir)
  path = pretrained.save(out_dir, config, denoiser.variables['params'],
                         denoiser.step,
                         os.path.basename(os.path.normpath(workdir)))
  logging.info('Exported %s step %d to %s (%.2f MB)', workdir,
               denoiser.step, out_dir, os.path.getsize(path) / 2**20)
  return path


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    export(FLAGS.workdir, FLAGS.out, FLAGS.checkpoint,
           target_noise_sigma=FLAGS.target_noise_sigma,
           bfloat16_psnr_cost_db=FLAGS.bfloat16_psnr_cost_db)
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Training workdir to export.')
  flags.DEFINE_string('out', pretrained.FOLDER, 'Folder to write to.')
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                    'Which checkpoint.')
  flags.DEFINE_float('target_noise_sigma', 0.0, 'Std (0-255) of the noise '
                     'the training targets hold themselves (measured with '
                     'xdn-noise on the training folder).')
  flags.DEFINE_float('bfloat16_psnr_cost_db', -1.0, 'Largest PSNR cost of '
                     'bfloat16 measured on the held-out settings (< 0: '
                     'not measured).')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
