"""Size buckets: the ladder, and outputs equal to those of exact sizes."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xdn import inference
from xdn.inference import size_buckets
from xdn import models
from xdn.models import unet
from xdn.noise import estimation as noise_estimation


def test_ladder_has_steps_per_octave_and_bounded_waste():
  sizes = sorted({size_buckets.bucket_length(n, 16) for n in range(1, 4097)})
  assert sizes[:3] == [16, 32, 48]
  octave = [s for s in sizes if 1024 <= s < 2048]
  assert octave == [1024, 1152, 1280, 1408, 1536, 1664, 1792, 1920]
  for n in range(200, 4097, 7):
    b = size_buckets.bucket_length(n, 16)
    assert b % 16 == 0 and n <= b <= max(n * 1.125, n + 15), (n, b)
  assert [size_buckets.margin(b, 16) for b in (1024, 1152, 2048)] == [
      48, 112, 112]  # The smallest padded sizes in them: 976, 1040, 1936.
  # A folder from 512 to 3000 pixels a side fits a handful per axis.
  assert len({size_buckets.bucket_length(n, 16)
              for n in range(512, 3001)}) == 21
  assert size_buckets.bucket_length(1000, 16, steps=0) == 1008


def test_pad_places_the_image_as_the_unet_pads_it():
  image = np.random.default_rng(0).random((1, 37, 50, 1), np.float32)
  padded, valid = size_buckets.pad(image, 16, steps=4)
  assert padded.shape == (1, 48, 64, 1) and list(valid) == [48, 64]
  reflect = np.pad(image, ((0, 0), (0, 11), (0, 14), (0, 0)), 'reflect')
  np.testing.assert_array_equal(padded, reflect)
  padded, valid = size_buckets.pad(image[:, :33, :33], 16, steps=1)
  assert padded.shape == (1, 64, 64, 1) and list(valid) == [48, 48]
  assert not padded[:, 48:].any() and not padded[:, :, 48:].any()


def _unet_variables(model, channels, seed=0):
  x = jnp.zeros((1, 32, 32, channels))

  @jax.jit  # One program: op by op, init and the draws take a minute.
  def make(key):
    variables = model.init(key, x)
    # Non-zero BatchNorm statistics and biases, so masking must undo them.
    return jax.tree.map(
        lambda v: v + 0.05 * jax.random.normal(jax.random.key(1), v.shape),
        variables)
  return make(jax.random.key(seed))


@pytest.mark.parametrize('norm,down,use_bias,steps', [
    ('none', 'conv', False, 2), ('batch', 'conv', True, 2),
    # The other variants: `pytest -m slow` (CI runs them on the newest
    # Python).
    pytest.param('none', 'pool', True, 2, marks=pytest.mark.slow),
    pytest.param('batch', 'conv', True, 1, marks=pytest.mark.slow)])
def test_unet_inside_a_bucket_equals_the_unet_alone(norm, down, use_bias,
                                                    steps):
  model = unet.UNet(depth=3, base_width=4, norm=norm, down=down,
                    use_bias=use_bias)
  variables = _unet_variables(model, 1)
  # Compiled, as inference runs it (op by op it takes minutes).
  apply = jax.jit(model.apply, static_argnames='margin')
  rng = np.random.default_rng(1)
  for h, w in [(37, 50), (64, 40), (9, 70)]:
    image = rng.random((2, h, w, 1), np.float32)
    alone = apply(variables, image)
    padded, valid = size_buckets.pad(image, 8, steps=steps)
    assert padded.shape[1:3] != (h, w)
    inside = apply(variables, padded, valid=valid)
    np.testing.assert_allclose(inside[:, :h, :w], alone, atol=2e-6)
    # Strips as wide as the bucket's margin are masked, not whole maps.
    margins = size_buckets.margins(padded.shape, 8, steps)
    assert all(m >= p - v for m, p, v in zip(margins, padded.shape[1:3],
                                               valid))
    inside = apply(variables, padded, valid=valid, margin=tuple(margins))
    np.testing.assert_allclose(inside[:, :h, :w], alone, atol=2e-6)
    # Without the mask the border pixels would differ: the test can fail.
    unmasked = apply(variables, padded)
    assert np.abs(unmasked[:, :h, :w] - alone).max() > 1e-3


def test_unet_refuses_a_region_it_cannot_honour():
  model = unet.UNet(depth=2, base_width=4, norm='group')
  variables = jax.jit(model.init)(jax.random.key(0),
                                  jnp.zeros((1, 16, 16, 1)))
  with pytest.raises(Exception, match='valid region'):
    model.apply(variables, jnp.zeros((1, 16, 16, 1)), valid=np.array([8, 8]))
  assert not models.takes_valid(ml_collections.ConfigDict(
      {'model': {'name': 'unet', 'up': 'resize'}}))
  assert not models.takes_valid(ml_collections.ConfigDict(
      {'model': {'name': 'autoencoder'}}))


def _exact_sizes(denoiser):
  return dataclasses.replace(denoiser, bucket_steps=0)


@pytest.fixture(scope='module')
def shipped():
  return inference.load_pretrained()


def test_shipped_model_bucketed_output_equals_exact_size(shipped):
  # Two sizes of one bucket: one compiled program, outputs as without.
  rng = np.random.default_rng(2)
  assert shipped.bucketed((300, 333)) and shipped.capabilities.takes_valid
  # A bucket's own size is computed as it is.
  assert not shipped.bucketed((320, 312)) and not shipped.bucketed((32, 32))
  for h, w in [(300, 333), (290, 310)]:
    image = np.clip(0.5 + 0.1 * rng.standard_normal((h, w)), 0, 1).astype(
        np.float32)
    bucketed = inference.denoise_image(shipped, image)
    exact = inference.denoise_image(_exact_sizes(shipped), image)
    assert bucketed.shape == exact.shape == (h, w)
    np.testing.assert_allclose(bucketed, exact, atol=1e-5)
    # Written at 16 bits, at most a rounding step apart.
    assert np.abs(np.round(bucketed * 65535) -
                  np.round(exact * 65535)).max() <= 1


def test_sizes_of_one_bucket_compile_one_program(shipped):
  lowered = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kw: lowered.append(event) if event.endswith(
          'jaxpr_to_mlir_module_duration') else None)
  denoiser = inference.load_pretrained()  # Nothing compiled yet.
  level = noise_estimation.known_noise('gaussian', 10.0, 0.0)
  image = lambda h, w: np.full((h, w), 0.5, np.float32)
  inference.denoise_image(denoiser, image(290, 300), noise_level=level)
  first = len(lowered)
  assert first > 0  # The listener sees JAX lower programs.
  for h, w in [(300, 290), (295, 318)]:  # Same bucket: 320 x 320.
    assert size_buckets.bucket_shape(h, w, 16) == (320, 320)
    inference.denoise_image(denoiser, image(h, w), noise_level=level)
  assert len(lowered) == first
  inference.denoise_image(_exact_sizes(denoiser), image(295, 318),
                          noise_level=level)
  assert len(lowered) > first  # Exact sizes compile per size.
