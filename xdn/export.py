"""Writes a trained run's best model into xdn/pretrained (the shipped model).

  python -m xdn.export --workdir=runs/pretrained [--out=xdn/pretrained]

Parameters are stored as float16 (half the size; `--check_images` measures
what that costs in PSNR against float32 on a few images).
"""

import json
import os
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import numpy as np

from xdn import errors
from xdn import inference
from xdn import pretrained

FLAGS = flags.FLAGS


def export(workdir: str, out_dir: str, which: str = 'best') -> str:
  """Saves `workdir`'s model (float16) and config to `out_dir`."""
  denoiser = inference.load_denoiser(workdir, which)
  config = denoiser.config.copy_and_resolve_references()
  config.data.manual_dir = '/path/to/nih1024/images'  # Placeholder.
  params = jax.tree.map(lambda x: np.asarray(x, np.float16),
                        denoiser.variables['params'])
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, pretrained.WEIGHTS)
  with open(path + '.tmp', 'wb') as f:
    f.write(flax.serialization.msgpack_serialize({'params': params}))
  os.replace(path + '.tmp', path)
  with open(os.path.join(out_dir, pretrained.CONFIG), 'w') as f:
    json.dump({'step': denoiser.step, 'workdir': os.path.basename(
        os.path.normpath(workdir)), 'parameter_dtype': 'float16',
               'config': json.loads(config.to_json_best_effort())},
              f, indent=2, sort_keys=True)
  logging.info('Exported %s step %d to %s (%.2f MB)', workdir,
               denoiser.step, out_dir, os.path.getsize(path) / 2**20)
  return path


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    export(FLAGS.workdir, FLAGS.out, FLAGS.checkpoint)
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Training workdir to export.')
  flags.DEFINE_string('out', pretrained.FOLDER, 'Folder to write to.')
  flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'],
                    'Which checkpoint.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
