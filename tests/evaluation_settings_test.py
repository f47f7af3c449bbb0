"""xdn.evaluation.settings: the noise grid and the noise every method sees."""

import jax
import numpy as np
import pytest
from scipy import ndimage

from xdn import errors
from xdn.evaluation import settings
from xdn.noise import spec


def clean_images(n: int = 3, size: int = 32) -> np.ndarray:
  rng = np.random.default_rng(0)
  images = ndimage.gaussian_filter(rng.random((n, size, size)), (0, 3, 3))
  images = (images - images.min()) / (images.max() - images.min())
  return (0.1 + 0.8 * images)[..., None].astype(np.float32)


def test_default_grid_covers_the_issue():
  grid = settings.parse()
  gaussian = {round(s.level, 1) for s in grid if s.kind == 'gaussian'}
  assert {15.0, 25.0, 50.0, 16.1, 22.8, 36.1} <= gaussian
  assert len([s for s in grid if s.kind == 'poisson']) >= 2
  assert {s.level for s in grid if s.kind == 'salt_and_pepper'} == {
      0.03, 0.10, 0.25}
  assert len({s.label for s in grid}) == len(grid)  # Unique rows.


def test_parse_rejoins_correlations_and_names_the_spec():
  assert settings.parse(['gaussian:25', 'correlated_gaussian:20', '0.4']) == [
      spec.NoiseSpec('gaussian', 25.0),
      spec.NoiseSpec('correlated_gaussian', 20.0, 0.4)]
  preset = settings.parse(['salt_and_pepper_hard'])[0]
  assert (preset.kind, preset.level) == ('salt_and_pepper', 0.25)
  assert preset.label == 'salt_and_pepper_hard (25%)'
  for bad in ('gaussian', 'gaussian:x', 'blur:3', 'gaussian:-1',
              'gaussian:25,0.3', 'correlated_gaussian:25,-0.2'):
    with pytest.raises(errors.UserError, match=bad.split(',')[0]) as e:
      settings.parse([bad])
    assert '--' not in str(e.value)  # The library names no flag.


@pytest.mark.parametrize('text,folds', [
    ('gaussian:25', (0, 25000)),
    ('poisson:50', (1, 50000)),
    ('gaussian_medium', (0, 22808)),
    ('correlated_gaussian:20,0.4', (6, 20000, 400)),
    ('xray:400,0.68', (7, 400000, 680)),
])
def test_noise_keys_never_change(text, folds):
  """The key is the seed folded with kind index, level and correlation in
  thousandths: tables made before draw the same noise."""
  want = jax.random.key(3)
  for value in folds:
    want = jax.random.fold_in(want, value)
  got = settings.noise_key(3, settings.parse([text])[0])
  np.testing.assert_array_equal(jax.random.key_data(got),
                                jax.random.key_data(want))


def test_noise_depends_only_on_seed_and_setting():
  clean = clean_images()
  a = settings.parse(['gaussian:25'])[0]
  first = settings.noisy_images(clean, a, seed=0)
  np.testing.assert_array_equal(first, settings.noisy_images(clean, a, 0))
  assert not np.array_equal(first, settings.noisy_images(clean, a, 1))
  other = settings.noisy_images(clean, settings.parse(['gaussian:15'])[0], 0)
  # Different settings do not share a noise pattern (scaled copies).
  assert abs(np.corrcoef((first - clean).ravel(),
                         (other - clean).ravel())[0, 1]) < 0.2
  assert first.min() >= 0 and first.max() <= 1  # Clipped.
  one = settings.noisy_image(clean[1], a, 0, 1)
  assert one.shape == clean[1].shape and not np.array_equal(one, first[1])


def test_as_json_keeps_the_results_files_fields():
  record = settings.as_json(settings.parse(['gaussian_easy'])[0])
  assert list(record) == ['kind', 'level', 'preset', 'correlation', 'label']
  assert record['preset'] == 'gaussian_easy'
