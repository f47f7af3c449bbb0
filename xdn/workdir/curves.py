"""A run's learning curve: validation PSNR against images seen (`xdn-curves`).

Reads the TensorBoard event files `run.py` writes (every restart of a
resumed run adds one; the last value of a step wins) and the run's
config.json for the batch size.
"""

import glob
import os
from typing import Dict

import numpy as np

from xdn import errors
from xdn.io import atomic
from xdn.workdir import checkpoints


def read_scalars(workdir: str, tag: str) -> Dict[int, float]:
  """{step: value} of scalar `tag` over all event files of `workdir`."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*')),
                 key=os.path.getmtime)
  if not files:
    raise errors.UserError(f'no TensorBoard event files in {workdir!r}: it '
                           'is not the workdir of a training run')
  values = {}
  for path in files:
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    if tag in acc.Tags().get('tensors', []):
      for event in acc.Tensors(tag):
        values[event.step] = float(tensor_util.make_ndarray(
            event.tensor_proto))
  return dict(sorted(values.items()))


def plot_learning_curve(workdir: str, out: str, tag: str = 'eval_psnr',
                        reference: Dict[str, float] = None) -> Dict[int, float]:
  """Saves `tag` against images seen (step x batch size) as a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  config = checkpoints.read_config(workdir)
  values = read_scalars(workdir, tag)
  if not values:
    raise errors.UserError(f'{workdir!r} has no {tag!r} yet; wait for an '
                           'evaluation (eval_every_steps)')
  steps = np.array(list(values))
  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  ax.plot(steps * config.batch_size / 1e3, list(values.values()), 'o-',
          label=tag.replace('_', ' '))
  for name, value in (reference or {}).items():
    ax.axhline(value, ls='--', color='gray')
    ax.annotate(name, (0, value), textcoords='offset points', xytext=(4, 3),
                fontsize=8, color='gray')
  ax.set_xlabel('thousand images seen')
  ax.set_ylabel('validation PSNR (dB)')
  ax.set_title(f'{os.path.basename(os.path.normpath(workdir))}: '
               f'{config.noise.kind} {config.noise.level:g}', fontsize=10)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  atomic.save_figure(fig, out, dpi=120)
  plt.close(fig)
  return values
