"""The methods an evaluation compares: the models (loaded, labelled, at
their strengths, each strength a column) and how they and the baselines
run on the test images."""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from xdn.evaluation import baselines
from xdn import inference
from xdn import models as models_lib
from xdn.noise import estimation as noise_estimation
from xdn.noise import synthetic as noise

# `columns`' strengths: every level each model has (its calibrated ones and
# 'full').
EVERY_LEVEL = ('levels',)


@dataclasses.dataclass(frozen=True)
class Model:
  """A model under evaluation."""
  label: str  # Its name, with the workdir's where names repeat.
  source: str  # 'pretrained' or the workdir it was loaded from.
  denoiser: Any  # `inference.Denoiser`: [B, H, W, 1] -> same, in [0, 1].
  checkpoint: str = 'best'  # Which checkpoint of the workdir.


@dataclasses.dataclass(frozen=True)
class Column:
  """One column of a table: a model at one strength."""
  name: str
  denoiser: Any
  model: Model  # The model it is a strength of.


def model_labels(denoisers: Sequence[Any], workdirs: Sequence[str]
                 ) -> List[str]:
  """Column names: the model name, with the workdir when names repeat."""
  names = [d.name for d in denoisers]
  return [n if names.count(n) == 1 else
          f'{n} ({os.path.basename(os.path.normpath(w))})'
          for n, w in zip(names, workdirs)]


def load_models(sources: Sequence[str], checkpoint: str = 'best',
                precision: str = 'float32',
                data_name: Optional[str] = None) -> List[Model]:
  """Loads each source ('pretrained' or a training workdir). With
  `data_name`, warns about models trained on other data."""
  denoisers = []
  for source in sources:
    denoiser = inference.load(source, checkpoint, precision)
    if (data_name is not None and source != inference.PRETRAINED and
        'data' in denoiser.config and
        denoiser.config.data.name != data_name):
      logging.warning('%s was trained on %s but is evaluated on %s', source,
                      denoiser.config.data.name, data_name)
    logging.info('Model %s at step %d from %s', denoiser.name, denoiser.step,
                 source)
    denoisers.append(denoiser)
  return [Model(label, source, denoiser, checkpoint) for label, source,
          denoiser in zip(model_labels(denoisers, sources), sources,
                          denoisers)]


def columns(models: Sequence[Model], strengths: Optional[Sequence[str]]
            ) -> List[Column]:
  """Each model at each strength, 'label (level)'.

  None: each at its default strength, labelled by its label alone.
  `EVERY_LEVEL`: each at every level it has. Models without a noise-level
  input appear once, as they are.
  """
  from xdn.inference import strength as strength_lib  # pylint: disable=g-import-not-at-top
  if strengths is None:
    return [Column(m.label, m.denoiser, m) for m in models]
  out = []
  for model in models:
    denoiser = model.denoiser
    if not models_lib.capabilities_of(denoiser).takes_noise_map:
      out.append(Column(model.label, denoiser, model))
      continue
    wanted = strengths
    if tuple(strengths) == EVERY_LEVEL:
      calibrated = strength_lib.calibrated_levels(
          denoiser.config.get('inference', {}))
      wanted = [l for l in strength_lib.LEVELS
                if l in calibrated or l == 'full']
    for strength in wanted:
      value = strength_lib.parse(strength)
      name = value if isinstance(value, str) else f'{value:g}'
      out.append(Column(f'{model.label} ({name})',
                        denoiser.at_strength(value), model))
  return out


def apply_model(denoiser, noisy: np.ndarray,
                told: Optional[noise_estimation.NoiseEstimate] = None
                ) -> np.ndarray:
  """Runs a model on [N, H, W, 1] images, tiling where it needs to.

  Each image is denoised as `xdn-denoise` would: a model with a noise-level
  input estimates each image's noise unless `told` it. Small images go
  through in batches, large ones one by one (whole or in tiles).
  """
  fixed = models_lib.capabilities_of(denoiser).fixed_size
  small = fixed is None and noisy.shape[1] * noisy.shape[2] <= 256 * 256
  if small or noisy.shape[1:3] == (fixed, fixed):
    return np.asarray(denoiser(noisy) if told is None else
                      denoiser(noisy, [told] * len(noisy)), np.float32)
  return np.stack([inference.denoise_image(denoiser, image[..., 0],
                                           noise_level=told)
                   for image in noisy])[..., None]


# (noisy [H, W], setting) -> denoised [H, W].
ImageMethod = Callable[[np.ndarray, Any], np.ndarray]


def image_methods(cols: Sequence[Column], baseline_names: Sequence[str],
                  read_noise: float = noise.DEFAULT_READ_NOISE
                  ) -> Dict[str, ImageMethod]:
  """name -> method on one image, for the lesion and fidelity reports:
  models blind as xdn-denoise runs them, baselines told the noise."""
  methods = {}
  for column in cols:
    methods[column.name] = (lambda d: lambda n, s: apply_model(
        d, n[None, ..., None])[0, ..., 0])(column.denoiser)
  for name in baseline_names:
    if name == 'noisy':
      continue
    methods[baselines.DISPLAY_NAMES[name]] = (lambda b: lambda n, s: (
        baselines.apply(b, n, s.kind, s.level, read_noise,
                        s.correlation)))(name)
  return methods
