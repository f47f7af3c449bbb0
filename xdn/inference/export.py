"""Writes a training run's model in the shipped model's format (`xdn-export`).

Parameters are stored as float16 (half the size).
"""

import os

from absl import logging

from xdn.inference import denoiser as denoiser_lib
from xdn.inference import strength
from xdn import pretrained


def export(workdir: str, out_dir: str, which: str = 'best', *,
           target_noise_sigma: float = 0.0,
           bfloat16_psnr_cost_db: float = -1.0) -> str:
  """Saves `workdir`'s model (float16) and config to `out_dir`.

  The config's `inference` section records what was measured about the
  model (see `xdn.inference.Denoiser`): its training targets' own noise
  std, the PSNR cost of bfloat16 (< 0: not measured; then
  precision='auto' stays float32) and its strength levels, when the
  workdir was calibrated (`xdn-evaluate --task=calibrate`).
  """
  denoiser = denoiser_lib.load_denoiser(workdir, which, strength='full')
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
                      "xdn-evaluate's calibrate task)", workdir)
  path = pretrained.save(out_dir, config, denoiser.variables['params'],
                         denoiser.step,
                         os.path.basename(os.path.normpath(workdir)))
  logging.info('Exported %s step %d to %s (%.2f MB)', workdir,
               denoiser.step, out_dir, os.path.getsize(path) / 2**20)
  return path
