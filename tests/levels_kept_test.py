"""`xdn.inference.levels_kept`: faint-lesion figures of a denoiser measured
on noisy images alone, against analytic cases, and the adaptation that
keeps a checkpoint only when every level keeps them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn.inference import adaptation
from xdn.inference import levels_kept
from xdn.inference import strength as strength_lib
from xdn.noise import texture as noise_texture

TILE = 64
LEVELS = ('low', 'medium')


def _probe(count=6, rho=0.4, seed=0):
  rng = np.random.default_rng(seed)
  images = (0.3 + 0.4 * rng.random((count, 1, 1, 1)) +
            np.zeros((count, TILE, TILE, 1))).astype(np.float32)
  # (a, b, rho, dose, scale): std 6 / 255 everywhere.
  params = (np.zeros(count, np.float32),
            np.full(count, (6 / 255)**2, np.float32),
            np.full(count, rho, np.float32), np.zeros(count, np.float32),
            np.ones(count, np.float32))
  kernel = noise_texture.kernel_of_correlations(rho, rho, 4)
  told = {level: params[:4] + (np.full(count, f, np.float32),)
          for level, f in zip(LEVELS, (0.5, 0.7))}
  fresh = _noise(jax.random.key(seed), images, params, kernel)
  return levels_kept.make_probe(images, params, told, kernel, fresh), kernel


def _noise(key, images, params, kernel):
  return np.asarray(adaptation.recorruption(
      key, jnp.asarray(images), tuple(jnp.asarray(p) for p in params),
      jnp.asarray(kernel)))


def _blur(images, width):
  x = jnp.arange(-12, 13, dtype=jnp.float32)
  g = jnp.exp(-0.5 * (x / width)**2)
  g = g / g.sum()
  k = (g[:, None] * g[None, :])[:, :, None, None]
  padded = jnp.pad(images, ((0, 0), (12, 12), (12, 12), (0, 0)),
                   mode='reflect')
  return jax.lax.conv_general_dilated(padded, k, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO',
                                                         'NHWC'))


def identity(variables, images, told, at_full):
  return images


def halved(variables, images, told, at_full):
  return 0.5 * images


def blurred(variables, images, told, at_full):
  return _blur(images, 2.0)


def test_lesion_contrast_gives_the_input_its_d_prime():
  """Each site's contrast over the sd of <u, z> across noise draws (of the
  images' std and texture) is LESION_D_PRIME."""
  probe, kernel = _probe()
  params = (np.zeros(6), np.full(6, (6 / 255)**2), np.zeros(6), np.zeros(6),
            np.ones(6))
  draws = np.stack([
      np.einsum('nshw,nhw->ns', probe.units,
                _noise(jax.random.key(100 + k), probe.images, params,
                       kernel)[..., 0]) for k in range(200)])
  signal = probe.contrasts * np.sum(probe.units**2, axis=(2, 3))
  d = signal / draws.std(axis=0)
  np.testing.assert_allclose(d, strength_lib.LESION_D_PRIME, rtol=0.12)
  assert abs(d.mean() / strength_lib.LESION_D_PRIME - 1) < 0.03


def test_identity_keeps_all_and_a_gain_keeps_d_prime():
  probe, _ = _probe()
  same = levels_kept.measure(levels_kept.compiled(identity), None, probe, batch=4)
  for level in LEVELS:
    assert same.transfer[level] == pytest.approx(1.0, abs=1e-4)
    assert same.d_prime[level] == pytest.approx(1.0, abs=1e-4)
  # A gain scales the lesion and the noise alike: d' is unchanged.
  half = levels_kept.measure(levels_kept.compiled(halved), None, probe, batch=4)
  ratios = levels_kept.compare(same, half)
  for level in LEVELS:
    assert ratios[level]['transfer'] == pytest.approx(0.5, abs=1e-4)
    assert ratios[level]['d_prime'] == pytest.approx(1.0, abs=1e-4)
  assert 'contrast transfer' in levels_kept.shortfall(ratios)
  assert levels_kept.shortfall(levels_kept.compare(same, same)) == ''


def test_a_blur_loses_faint_lesions_and_is_named():
  """A 2 px blur erases some of a 3 px lesion and passes the correlated
  noise's band: both figures fall, more for the smallest lesion."""
  probe, _ = _probe(count=6)
  same = levels_kept.measure(levels_kept.compiled(identity), None, probe, batch=6)
  blur = levels_kept.measure(levels_kept.compiled(blurred), None, probe, batch=6)
  ratios = levels_kept.compare(same, blur)
  for level in LEVELS:
    assert ratios[level]['transfer'] < 1 - levels_kept.TOLERANCE
  text = levels_kept.shortfall(ratios)
  assert text.startswith('at ') and "the start's" in text


def test_levels_of_a_model_config():
  config = {'strength_levels': {'low': 0.4, 'medium': 0.6, 'full': 1.0}}
  assert list(levels_kept.levels_of(config)) == ['low', 'medium']
  assert list(levels_kept.levels_of({})) == []
