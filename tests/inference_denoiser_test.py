"""The Denoiser's parts: a frozen core, capabilities from the registry, one
rule for the noise told, the fidelity branch skipped at full strength."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xdn import errors
from xdn import inference
from xdn.inference import tiling
from xdn.inference import told
from xdn import models
from xdn.models import conditioning
from xdn.noise import estimation as noise_estimation


def _config(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': models.model_config('unet', depth=2, base_width=4,
                                   **fields)})


def _variables(config, seed=0):
  """Initialised, then perturbed: a zero-initialised head (the fidelity
  branch's) must not hide what it adds."""
  model = models.create_model(config)
  channels = 1 + models.noise_channels(config)
  variables = model.init(jax.random.key(seed),
                         jnp.zeros((1, 16, 16, channels)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda l: np.asarray(l) + np.float32(0.05) * rng.standard_normal(
          l.shape, np.float32), variables)


def _image(h=24, w=20, seed=0):
  rng = np.random.default_rng(seed)
  return np.clip(0.5 + 0.1 * rng.standard_normal((h, w)), 0, 1).astype(
      np.float32)


@pytest.fixture(scope='module')
def noise_map_denoiser():
  config = _config(noise_map=True, correlation_map=True)
  return inference.Denoiser(config, _variables(config), 1, 'tiny',
                            strength='full', ensemble_max_pixels=0)


def test_a_denoiser_is_frozen_and_varied_by_replace(noise_map_denoiser):
  d = noise_map_denoiser
  with pytest.raises(dataclasses.FrozenInstanceError):
    d.batch_size = 4  # pytype: disable=not-writable
  half = d.at_strength(0.5)
  small = dataclasses.replace(d, batch_size=1)
  assert (half.strength, half.strength_factor) == (0.5, 0.5)
  assert d.strength == 'full' and d.strength_factor == 1.0
  # Variants share the weights and the compiled programs ...
  assert half.programs is d.programs is small.programs
  assert half.variables is d.variables
  image = _image()[None, ..., None]
  np.testing.assert_array_equal(small(np.repeat(image, 3, 0))[1], d(image)[0])
  # ... but a denoiser of another config compiles its own.
  other = d.config.copy_and_resolve_references()
  assert inference.Denoiser(other, d.variables, 1, 'x').programs is not (
      d.programs)


def test_capabilities_come_from_the_registry(noise_map_denoiser):
  caps = noise_map_denoiser.capabilities
  assert caps == models.capabilities(noise_map_denoiser.config)
  assert caps.takes_noise_map and caps.takes_correlation and caps.takes_valid
  assert noise_map_denoiser.size_multiple == caps.size_multiple == 4
  plain = _config()
  d = inference.Denoiser(plain, _variables(plain), 1, 'plain')
  assert not d.capabilities.takes_noise_map and d.strength == 'full'
  with pytest.raises(errors.UserError, match='takes no noise level') as e:
    d.at_strength(0.5)
  assert '--' not in str(e.value)


def test_the_noise_is_estimated_unless_told(noise_map_denoiser):
  image = _image()
  caps = noise_map_denoiser.capabilities
  given = noise_estimation.known_noise('gaussian', 12.0, 0.0)
  assert told.noise_for(caps, image, given) is given
  assert told.noise_for(caps, image) == noise_estimation.estimate_noise(image)
  # A model not told its noise is told nothing, given or not.
  assert told.noise_for(models.PLAIN, image, given) is None
  assert told.noise_for_each(models.PLAIN, [image], [given]) is None
  # The Denoiser and denoise_image ask the same rule.
  estimate = [noise_estimation.estimate_noise(image)]
  np.testing.assert_array_equal(noise_map_denoiser(image[None, ..., None]),
                                noise_map_denoiser(image[None, ..., None],
                                                   estimate))
  np.testing.assert_array_equal(
      tiling.denoise_image(noise_map_denoiser, image),
      tiling.denoise_image(noise_map_denoiser, image,
                           noise_level=estimate[0]))


def test_a_fidelity_branch_is_skipped_at_full_strength_only():
  config = _config(noise_map=True, correlation_map=True, strength_map=True,
                   fidelity_branch_width=4)
  variables = _variables(config)
  d = inference.Denoiser(config, variables, 1, 'v3', ensemble_max_pixels=0)
  model = models.create_model(config)
  image = _image(16, 16)[None, ..., None]
  level = [noise_estimation.known_noise('correlated_gaussian', 20.0, 0.0,
                                        0.3)]
  a, b, rho, dose, _ = d.noise_params(level, 1)

  def whole_model(s):
    x = conditioning.model_input(jnp.asarray(image), a, b, d.capabilities.told,
                                 correlation=rho, xray_dose=dose,
                                 strength=jnp.full(1, s))
    return np.clip(np.asarray(model.apply(variables, x)), 0, 1)

  for s in (0.5, 1.0, 1.5):
    out = d.at_strength(s)(image, level)
    # The base alone at s >= 1 is what the whole model computes there.
    np.testing.assert_allclose(out, whole_model(s), atol=1e-6)
  # Below full the branch acts: the test can tell the two apart.
  assert np.abs(whole_model(0.5) - whole_model(1.0)).max() > 1e-4


def test_library_errors_name_the_concept_not_a_flag():
  fixed = _config()
  with fixed.unlocked():
    fixed.model = models.model_config('autoencoder')
  d = inference.Denoiser(fixed, None, 1, 'seed')
  for kwargs in (dict(tile=32), dict(overlap=64)):
    with pytest.raises(errors.UserError) as e:
      tiling.denoise_image(d, _image(80, 80), **kwargs)
    assert '--' not in str(e.value), str(e.value)
