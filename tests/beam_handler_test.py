"""XdnModelHandler alone and inside RunInference (needs the beam extra).

Its outputs must be `xdn-denoise`'s (inference.denoise_image on the same
model, precision and noise), batches must keep one model call per image,
and bad settings must fail in one line.
"""

import numpy as np
import pytest

beam = pytest.importorskip('apache_beam')
# pylint: disable=g-import-not-at-top,wrong-import-position
from apache_beam.ml.inference import base
from apache_beam.testing import util as beam_testing

from xdn.beam import handler as handler_lib
from xdn import errors
from xdn import inference
from xdn.noise import estimation as noise_estimation


def _image(h: int, w: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  clean = 0.3 + 0.4 * (xx + yy) / (h + w)
  return np.clip(clean + rng.normal(0, 0.06, (h, w)), 0, 1).astype(np.float32)


IMAGES = [_image(64, 64, 0), _image(64, 64, 1)]


@pytest.fixture(scope='module')
def handler():
  return handler_lib.XdnModelHandler('pretrained', precision='float32')


@pytest.fixture(scope='module')
def loaded(handler):
  return handler.load_model()


def test_outputs_equal_denoise_image(handler, loaded):
  results = list(handler.run_inference(IMAGES, loaded))
  assert len(results) == len(IMAGES)
  denoiser = loaded.denoiser
  for image, result in zip(IMAGES, results):
    assert result.example is image
    denoised = result.inference
    assert isinstance(denoised, handler_lib.DenoisedImage)
    level = noise_estimation.estimate_noise(image)
    assert denoised.noise == level  # Estimated per image, as the CLI does.
    want = inference.denoise_image(denoiser, image, noise_level=level)
    np.testing.assert_allclose(denoised.pixels, want, atol=1e-6, rtol=0)
    assert denoised.pixels.shape == image.shape
    assert denoised.pixels.dtype == np.float32
    assert not np.allclose(denoised.pixels, image, atol=1e-3)
    assert denoised.seconds > 0
    assert 'noise told: estimated from each image' in denoised.description
    assert result.model_id == 'pretrained'


def test_noise_given_is_told_to_every_image(loaded):
  level = noise_estimation.known_noise('gaussian', 15.0, 0.0)
  told = handler_lib.LoadedDenoiser(loaded.denoiser, level,
                                    loaded.denoise_kwargs)
  (result,) = told.denoise([IMAGES[0]])
  assert result.noise == level
  want = inference.denoise_image(loaded.denoiser, IMAGES[0],
                                 noise_level=level)
  np.testing.assert_allclose(result.pixels, want, atol=1e-6, rtol=0)
  assert level.describe() in result.description


def test_batching_bytes_and_sharing(handler):
  assert handler.batch_elements_kwargs() == {'min_batch_size': 1,
                                             'max_batch_size': 1}
  assert handler_lib.XdnModelHandler(
      max_batch_size=8).batch_elements_kwargs()['max_batch_size'] == 8
  assert handler.get_num_bytes(IMAGES) == 2 * 64 * 64 * 4
  assert handler.get_metrics_namespace() == 'xdn'
  # No accelerator plugin in the test environment: one model per process.
  assert handler.share_model_across_processes() == (
      handler_lib.accelerator_installed())
  assert handler_lib.XdnModelHandler(
      share_across_processes=True).share_model_across_processes()


@pytest.mark.parametrize('kwargs,message', [
    (dict(precision='float16'), 'unknown precision'),
    (dict(checkpoint='first'), "use 'best' or 'latest'"),
    (dict(max_batch_size=0), 'must be >= 1'),
    (dict(strength='extreme'), 'strength'),
])
def test_bad_settings_fail_in_one_line(kwargs, message):
  with pytest.raises(errors.UserError, match=message) as e:
    handler_lib.XdnModelHandler(**kwargs)
  assert '\n' not in str(e.value)


def test_bad_examples_and_arguments_are_refused(handler, loaded):
  with pytest.raises(errors.UserError, match=r'\[H, W\] image'):
    list(handler.run_inference([np.zeros((2, 8, 8), np.float32)], loaded))
  with pytest.raises(errors.UserError, match='inference_args'):
    list(handler.run_inference(IMAGES, loaded, {'tile': 3}))


def test_inside_run_inference_keyed_by_path(handler):
  keyed = [(f'scan{i}.png', image) for i, image in enumerate(IMAGES)]

  def check(results):
    assert sorted(k for k, _ in results) == ['scan0.png', 'scan1.png']
    for key, result in results:
      index = int(key[4])
      assert result.inference.pixels.shape == IMAGES[index].shape
      np.testing.assert_array_equal(result.example, IMAGES[index])

  pipeline = beam.Pipeline()
  results = (pipeline | beam.Create(keyed)
             | base.RunInference(base.KeyedModelHandler(handler)))
  beam_testing.assert_that(results, check)
  outcome = pipeline.run()
  outcome.wait_until_finish()
  counters = {c.key.metric.name: c.committed for c in outcome.metrics().query(
      beam.metrics.MetricsFilter().with_namespace('xdn'))['counters']}
  assert counters['images'] == 2
  assert counters['pixels'] == 2 * 64 * 64


def test_failures_as_results_name_the_image_instead_of_failing_the_batch():
  """For runners without RunInference's dead letters (DaskRunner): a
  failing image gives a result with its reason; by default it raises."""
  raising = handler_lib.XdnModelHandler('pretrained', precision='float32')
  tolerant = handler_lib.XdnModelHandler('pretrained', precision='float32',
                                         failures_as_results=True)
  loaded = tolerant.load_model()
  # A cube where an image belongs: the denoiser refuses it.
  bad = np.zeros((2, 8, 8), np.float32)
  results = loaded.denoise([bad, IMAGES[0]])
  assert results[0].error and results[0].pixels.size == 0
  assert '\n' not in results[0].error
  assert not results[1].error and results[1].pixels.shape == IMAGES[0].shape
  strict = raising.load_model()
  with pytest.raises(Exception):
    strict.denoise([bad])


def test_a_worker_process_loads_each_model_once(handler, loaded):
  """Runners that set up RunInference per bundle (DaskRunner: per
  partition) get the loaded model again; other settings load their own."""
  assert handler.load_model() is loaded
  twin = handler_lib.XdnModelHandler('pretrained', precision='float32')
  other = handler_lib.XdnModelHandler('pretrained', precision='float32',
                                      strength='full')
  assert twin.load_model() is loaded  # The same settings: the same model.
  assert other.load_model() is not loaded
  assert other.load_model().denoiser.strength == 'full'
