r"""Measures input-pipeline throughput (images/s) of `train_batches`.

  python -m xdn.data.benchmark [--config=configs/default.py] \
      [--config.data.name=chest_xray/256 --config.data.manual_dir=...] \
      [--batch_size=128 --steps=300]

Prints one JSON object: images/s without augmentation and with flip + rot90
(random crop follows the config), measured after warm-up batches.
"""

import json
import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags

from xdn.data import pipeline

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
_DEFAULT_CONFIG = os.path.join(_REPO, 'configs', 'default.py')

_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Config file; only `config.data` is used.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Timed batches per setting.')
_WARMUP = flags.DEFINE_integer('warmup', 20, 'Untimed batches first.')


def images_per_second(data_config, batch_size: int, steps: int,
                      warmup: int) -> float:
  """Steady-state images/s of `pipeline.train_batches` with `data_config`."""
  batches = pipeline.train_batches(
      data_config, global_batch_size=batch_size, num_devices=1, seed=0)
  try:
    for _ in range(warmup):
      next(batches)
    start = time.perf_counter()
    for _ in range(steps):
      next(batches)
    return steps * batch_size / (time.perf_counter() - start)
  finally:
    batches.close()


def main(argv):
  del argv
  data = _CONFIG.value.data
  pipeline.prepare(data)
  results = {'data': data.name, 'image_size': data.image_size,
             'batch_size': _BATCH_SIZE.value, 'prefetch': data.prefetch,
             'random_crop': data.random_crop}
  for key, flip in (('plain', False), ('flip_rot90', True)):
    config = data.copy_and_resolve_references()
    config.flip = config.rot90 = flip
    results[f'images_per_s_{key}'] = round(images_per_second(
        config, _BATCH_SIZE.value, _STEPS.value, _WARMUP.value))
  print(json.dumps(results))


if __name__ == '__main__':
  app.run(main)
