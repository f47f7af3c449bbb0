"""`XdnModelHandler`: xdn's denoisers in Apache Beam's RunInference.

  handler = KeyedModelHandler(XdnModelHandler('pretrained'))
  results = keyed_images | RunInference(handler)   # (path, [H, W] image)

Each example is one radiograph as `xdn-denoise` sees it: [H, W] float32 in
[0, 1], bright = dense (`xdn.io.radiographs.read_radiograph(...).pixels`).
Each `PredictionResult.inference` is a `DenoisedImage`: the denoised pixels
(same shape and range), the noise the model was told (given, or estimated
from that image by `xdn.inference.told`, as `xdn-denoise` does) and the
seconds it took. Images are denoised whole or in tiles by
`xdn.inference.denoise_image`'s rule, so the pixels equal `xdn-denoise`'s
for the same model, precision and strength.

The model loads through `xdn.inference.load` (which sets XLA's flags and
JAX's compilation cache as the command lines do) once per worker process,
or once per machine when `share_across_processes` (default: when JAX has
an accelerator plugin installed, so that one GPU holds one copy).
"""

import dataclasses
import importlib.util
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from absl import logging
from apache_beam import metrics
from apache_beam.ml.inference import base
import numpy as np

from xdn import errors
from xdn.inference import denoiser as inference
from xdn.inference import ensemble
from xdn.inference import outputs
from xdn.inference import precision as precision_lib
from xdn.inference import strength as strength_lib
from xdn.inference import tiling
from xdn.inference import told
from xdn.noise.estimation import NoiseEstimate

METRICS_NAMESPACE = 'xdn'
# JAX's accelerator plugins: with one installed, a machine's worker
# processes share one model (one copy of weights and compiled programs per
# device) instead of each loading its own.
_ACCELERATOR_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin',
                        'jax_rocm60_plugin', 'libtpu')


@dataclasses.dataclass(frozen=True)
class DenoisedImage:
  """One denoised radiograph (a `PredictionResult.inference`)."""
  pixels: np.ndarray  # [H, W] float32 in [0, 1].
  noise: Optional[NoiseEstimate]  # Told to the model; None: takes none.
  seconds: float  # Estimating the noise and denoising (not decoding).
  # The run in words (`outputs.describe`): what DICOM outputs carry, known
  # only once the model is loaded, so it travels with each result.
  description: str = ''
  # Why this image failed (`outputs.failure_message`), with a handler made
  # with failures_as_results; then `pixels` is empty.
  error: str = ''


class LoadedDenoiser:
  """A loaded denoiser with the run's settings; what `load_model` returns.

  Everything `run_inference` needs is the one method `denoise`, whose
  arguments and results pickle: with `share_across_processes`, Beam
  serves this object from one process and the others call it by proxy.
  """

  def __init__(self, denoiser: inference.Denoiser,
               noise_level: Optional[NoiseEstimate],
               denoise_kwargs: Dict[str, Any],
               failures_as_results: bool = False):
    self.denoiser = denoiser
    self.noise_level = noise_level
    self.denoise_kwargs = denoise_kwargs
    self.failures_as_results = failures_as_results

  def description(self) -> str:
    """The run in words (DICOM outputs carry it): `outputs.describe`."""
    return outputs.describe(self.denoiser, self.noise_level)

  def _noise_for(self, image: np.ndarray) -> Optional[NoiseEstimate]:
    # Here rather than inside denoise_image (which would do the same) so
    # that the results table can show it.
    return told.noise_for(self.denoiser.capabilities, image,
                          self.noise_level)

  def denoise(self, images: Sequence[np.ndarray]) -> List[DenoisedImage]:
    """Denoises [H, W] images one after the other, as `xdn-denoise` does.

    One image per model call keeps the compiled programs those of one image
    size (no recompile per batch size) and the outputs equal to the
    command line's; BatchElements' batches only amortise Beam's overhead.
    """
    results = []
    description = self.description()
    for image in images:
      start = time.perf_counter()
      try:
        image = np.asarray(image, np.float32)
        level = self._noise_for(image)
        pixels = tiling.denoise_image(self.denoiser, image, noise_level=level,
                                      **self.denoise_kwargs)
      except MemoryError:
        raise  # Not the image's fault: let the runner retry elsewhere.
      except Exception as e:  # pylint: disable=broad-except  # Per image.
        if not self.failures_as_results:
          raise
        results.append(DenoisedImage(
            np.zeros((0, 0), np.float32), None, time.perf_counter() - start,
            description, error=outputs.failure_message(e)))
        continue
      results.append(DenoisedImage(np.asarray(pixels, np.float32), level,
                                   time.perf_counter() - start,
                                   description))
    return results


def accelerator_installed() -> bool:
  """Whether JAX has an accelerator plugin, without starting JAX."""
  return any(importlib.util.find_spec(name) is not None
             for name in _ACCELERATOR_PLUGINS)


# The denoisers this process loaded, by the handler's settings
# (`XdnModelHandler.load_model`).
_LOADED: Dict[tuple, 'LoadedDenoiser'] = {}


class XdnModelHandler(base.ModelHandler[np.ndarray, base.PredictionResult,
                                        LoadedDenoiser]):
  """RunInference with an xdn denoiser (see the module docstring).

  Args:
    model: 'pretrained' (the model shipped inside xdn), a folder exported
      by `xdn-export`, or a training workdir; a path every worker
      can read.
    precision: 'float32', 'bfloat16' or 'auto', as `xdn-denoise
      --precision` (`xdn.inference.precision.resolve_precision`).
    strength: 'low', 'medium', 'high', 'full' or a factor, as
      `xdn-denoise --strength`; None: the model's default.
    noise_level: the noise every image has (`xdn.noise.estimation.
      known_noise`; `xdn-denoise --noise`); None: estimated per image.
    checkpoint: a workdir's 'best' or 'latest' checkpoint.
    tile, overlap, batch_size, max_pixels, ensemble_max_pixels: as the
      `xdn-denoise` flags of those names.
    max_batch_size: images per RunInference batch (BatchElements).
    share_across_processes: one model per machine; None: when an
      accelerator plugin is installed.
    compile_cache: JAX's persistent compilation cache
      (`xdn.runtime.compile_cache`).
    failures_as_results: an image that fails gives a `DenoisedImage` with
      its `error` instead of failing its batch: for runners without
      RunInference's dead letters (`with_exception_handling` needs tagged
      outputs, which Beam's DaskRunner cannot give).
  """

  def __init__(self, model: str = 'pretrained', *, precision: str = 'auto',
               strength: Optional[strength_lib.Strength] = None,
               noise_level: Optional[NoiseEstimate] = None,
               checkpoint: str = 'best', tile: int = 0, overlap: int = -1,
               batch_size: int = 32,
               max_pixels: int = tiling.MAX_WHOLE_PIXELS,
               ensemble_max_pixels: int = ensemble.MAX_PIXELS,
               max_batch_size: int = 1,
               share_across_processes: Optional[bool] = None,
               compile_cache: bool = True,
               failures_as_results: bool = False):
    super().__init__()
    if precision not in precision_lib.PRECISIONS:
      raise errors.UserError(f'unknown precision {precision!r}; use one of '
                             f'{precision_lib.PRECISIONS}')
    if checkpoint not in ('best', 'latest'):
      raise errors.UserError(f"checkpoint {checkpoint!r}: use 'best' or "
                             "'latest'")
    if max_batch_size < 1 or batch_size < 1:
      raise errors.UserError('max_batch_size and batch_size must be >= 1')
    self._model = model
    self._precision = precision
    self._strength = (strength_lib.parse(strength) if strength is not None
                      else None)
    self._noise_level = noise_level
    self._checkpoint = checkpoint
    self._denoise_kwargs = dict(tile=tile, overlap=overlap,
                                batch_size=batch_size, max_pixels=max_pixels)
    self._ensemble_max_pixels = ensemble_max_pixels
    self._max_batch_size = max_batch_size
    self._share = share_across_processes
    self._compile_cache = compile_cache
    self._failures_as_results = failures_as_results

  def _key(self) -> tuple:
    return (self._model, self._checkpoint, self._precision, self._strength,
            repr(self._noise_level),
            tuple(sorted(self._denoise_kwargs.items())),
            self._ensemble_max_pixels, self._compile_cache,
            self._failures_as_results)

  def load_model(self) -> LoadedDenoiser:
    """The denoiser, loaded once per worker process: runners that set a
    step up for every bundle (Beam's DaskRunner does, for each partition)
    get the one already loaded instead of loading it again."""
    key = self._key()
    if key not in _LOADED:
      _LOADED[key] = self._load()
    return _LOADED[key]

  def _load(self) -> LoadedDenoiser:
    """Loads the denoiser in this worker (XLA flags first, as the CLIs)."""
    from xdn.workdir import checkpoints  # pylint: disable=g-import-not-at-top
    from xdn.io import radiographs as radiograph_io  # pylint: disable=g-import-not-at-top
    from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top
    xla_flags.configure_xla_cpu()  # Before this process's first JAX call.
    checkpoints.quiet_orbax_logs()
    radiograph_io.quiet_pydicom_logs()
    if not self._compile_cache:
      os.environ['XDN_COMPILE_CACHE'] = '0'
    denoiser = inference.load(
        self._model, self._checkpoint, self._precision, self._strength,
        batch_size=self._denoise_kwargs['batch_size'],
        ensemble_max_pixels=self._ensemble_max_pixels)
    noise_level = self._noise_level
    if noise_level is not None and not denoiser.capabilities.takes_noise_map:
      logging.warning('The noise level given is ignored: model %s takes no '
                      'noise level', denoiser.name)
      noise_level = None
    logging.info('Model %s (step %d) from %s, %s, strength %s (pid %d)',
                 denoiser.name, denoiser.step, self._model,
                 denoiser.precision, denoiser.strength_label, os.getpid())
    return LoadedDenoiser(denoiser, noise_level, self._denoise_kwargs,
                          self._failures_as_results)

  def run_inference(self, batch: Sequence[np.ndarray], model: LoadedDenoiser,
                    inference_args: Optional[Dict[str, Any]] = None
                    ) -> Iterable[base.PredictionResult]:
    """Denoises a batch of [H, W] images in [0, 1]."""
    if inference_args:
      raise errors.UserError(f'XdnModelHandler takes no inference_args, got '
                             f'{sorted(inference_args)}')
    for image in batch:
      if np.ndim(image) != 2:
        raise errors.UserError(f'expected a [H, W] image, got shape '
                               f'{np.shape(image)}')
    results = model.denoise(list(batch))
    metrics.Metrics.counter(METRICS_NAMESPACE, 'images').inc(len(batch))
    metrics.Metrics.counter(METRICS_NAMESPACE, 'pixels').inc(
        sum(int(np.size(image)) for image in batch))
    return [base.PredictionResult(image, result, model_id=self._model)
            for image, result in zip(batch, results)]

  def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
    return sum(int(np.asarray(image).nbytes) for image in batch)

  def get_metrics_namespace(self) -> str:
    return METRICS_NAMESPACE

  def batch_elements_kwargs(self) -> Dict[str, Any]:
    # Each image is its own model call (LoadedDenoiser.denoise), so a batch
    # never forces a compile for a new batch shape; 1 also keeps one large
    # radiograph from waiting on others in memory.
    return {'min_batch_size': 1, 'max_batch_size': self._max_batch_size}

  def share_model_across_processes(self) -> bool:
    if self._share is None:
      self._share = accelerator_installed()
    return self._share

