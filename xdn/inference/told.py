"""What a denoiser is told of each image's noise: given, or estimated.

The one home of "estimate the noise unless told" (`noise_for`,
`noise_for_each`): `denoise_image`, `Denoiser`, the folder loop, Beam and
adaptation all ask here. A model told its noise (`takes_noise_map`) gets
the noise given, or else each image's own estimate
(`xdn.noise.estimation.estimate_noise`); any other model is told nothing,
given or not.
`noise_params` turns what is told into the per-image arrays a model takes
(`xdn.models.conditioning`).
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np

from xdn import models
from xdn.noise import estimation as noise_estimation
from xdn.noise.estimation import NoiseEstimate
from xdn.noise import spec as noise_spec

# (a, b, correlation, X-ray dose, strength factor), one value per image.
Params = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def parse_noise(text: str, read_noise: float) -> Optional[NoiseEstimate]:
  """A noise spec (`xdn.noise.spec`) as told to a model: None for 'auto'
  (estimated per image), else the named noise's variance model
  (`read_noise`: poisson_gaussian's read-noise std, 0-255 scale). A bad
  spec is a one-line `UserError` naming it."""
  return noise_estimation.told_noise(noise_spec.parse(text, allow_auto=True),
                                     read_noise)


def noise_for(capabilities: models.Capabilities, image: np.ndarray,
              given: Optional[NoiseEstimate] = None
              ) -> Optional[NoiseEstimate]:
  """The noise a model is told of one [H, W] image: for a model told its
  noise, `given` or else the image's own estimate; for any other, None."""
  if not capabilities.takes_noise_map:
    return None
  return given if given is not None else noise_estimation.estimate_noise(
      image)


def noise_for_each(capabilities: models.Capabilities,
                   images: Sequence[np.ndarray],
                   given: Optional[Sequence[NoiseEstimate]] = None
                   ) -> Optional[List[NoiseEstimate]]:
  """`noise_for` of each [H, W] image (`given`: one per image)."""
  if not capabilities.takes_noise_map:
    return None
  if given is not None:
    return list(given)
  return [noise_estimation.estimate_noise(image) for image in images]


def variance_params(levels: Optional[Sequence[NoiseEstimate]], count: int,
                    xray_law: bool = False) -> Tuple[np.ndarray, ...]:
  """(a, b, correlation, X-ray dose) per image, from their noise estimates
  (None: zeros).

  An X-ray estimate is told as its law to a model trained on it
  (`xray_law`), else as the line beside it (a, b): what such a model was
  told in training.
  """
  if levels is None:
    return tuple(np.zeros(count, np.float32) for _ in range(4))
  if len(levels) != count:
    raise ValueError(f'{len(levels)} noise levels for {count} images')
  dose = np.array([l.xray_dose for l in levels], np.float32)
  if not xray_law:
    dose = np.zeros_like(dose)
  law = dose > 0
  return (np.where(law, 0.0, [l.a for l in levels]).astype(np.float32),
          np.where(law, 0.0, [l.b for l in levels]).astype(np.float32),
          np.array([l.correlation for l in levels], np.float32), dose)


def noise_params(levels: Optional[Sequence[NoiseEstimate]], count: int,
                 capabilities: models.Capabilities, target_noise_sigma: float,
                 factors: np.ndarray) -> Params:
  """What a model is told of `count` images' noise: (a, b, correlation,
  X-ray dose, strength factor), each [count] float32.

  `target_noise_sigma` (0-255): the noise of the model's own training
  targets, added in quadrature to the noise told to a model told its
  noise (see `Denoiser`); `factors`: each image's strength
  (`xdn.inference.strength.factors`).
  """
  a, b, rho, dose = variance_params(levels, count,
                                    capabilities.takes_xray_law)
  if capabilities.takes_noise_map and target_noise_sigma > 0:
    b = b + np.float32((target_noise_sigma / 255.0)**2)
  return a, b, rho, dose, factors
