"""xdn.evaluation.tasks: the registry, and what the tasks write."""

import json
import os
import sys

import numpy as np
from PIL import Image
import pytest

from xdn import errors
from xdn.evaluation import baselines
from xdn.evaluation import cache
from xdn.evaluation import images
from xdn.evaluation import methods
from xdn.evaluation import settings
from xdn.evaluation import tasks
from xdn import models
from xdn.models import conditioning
from tests.denoise_test import FakeDenoiser
from tests.evaluation_settings_test import clean_images


class FakeNoiseMapDenoiser(FakeDenoiser):
  """A fake model with a noise-level input: it has strengths."""

  def __init__(self, name: str, strength=None):
    super().__init__(name=name)
    self.capabilities = models.Capabilities(
        told=conditioning.Conditioning(noise_map=True))
    self.strength_label = strength

  def at_strength(self, strength):
    return FakeNoiseMapDenoiser(self.name, strength)


def _inputs(tmp_path, models, baseline_names=('noisy',)):
  return tasks.Inputs(clean_images(2, 16), 'fake', 'test',
                      tuple(settings.parse(['gaussian:25'])), tuple(models),
                      tuple(baseline_names), str(tmp_path))


def test_the_registry_holds_every_task():
  assert list(tasks.TASKS) == ['denoise', 'lesions', 'fidelity', 'calibrate']
  with pytest.raises(errors.UserError, match="evaluation task 'psnr'"):
    tasks.get('psnr')


def test_each_column_names_its_own_workdir(tmp_path):
  """Two strengths of model a, then model b: each column records the model
  it is a strength of (the table once paired columns with workdirs in
  order, so a's second strength got b's workdir)."""
  models = [methods.Model('a', 'runs/a', FakeNoiseMapDenoiser('a')),
            methods.Model('b', 'runs/b', FakeDenoiser(name='b'), 'latest')]
  table = tasks.run('denoise', _inputs(tmp_path, models),
                    tasks.Options(strengths=('full', '0.5')))
  assert '| noise | noisy input | a (full) | a (0.5) | b |' in table
  with open(tmp_path / 'eval_results.json', encoding='utf-8') as f:
    saved = json.load(f)
  assert [(m['column'], m['workdir'], m['name'], m['checkpoint'])
          for m in saved['models']] == [
              ('a (full)', 'runs/a', 'a', 'best'),
              ('a (0.5)', 'runs/a', 'a', 'best'),
              ('b', 'runs/b', 'b', 'latest')]


def test_calibration_needs_a_model_with_strengths(tmp_path):
  plain = [methods.Model('b', 'runs/b', FakeDenoiser(name='b'))]
  with pytest.raises(errors.UserError, match='takes no noise level'):
    tasks.run('calibrate', _inputs(tmp_path, plain), tasks.Options())
  with pytest.raises(errors.UserError, match='including 1'):
    tasks.run('calibrate', _inputs(
        tmp_path, [methods.Model('a', 'runs/a', FakeNoiseMapDenoiser('a'))]),
              tasks.Options(calibration_factors=(0.5, 0.7)))


@pytest.mark.parametrize('task', ['lesions', 'fidelity', 'calibrate'])
def test_lesion_options_are_checked_naming_the_concept(tmp_path, task):
  models = [methods.Model('a', 'runs/a', FakeNoiseMapDenoiser('a'))]
  bad = tasks.Options(lesions=tasks.LesionOptions(sizes=(3.0,), per_size=1))
  with pytest.raises(errors.UserError, match='lesions per size') as e:
    tasks.run(task, _inputs(tmp_path, models), bad)
  assert '--' not in str(e.value)


def test_the_cache_keeps_outputs_by_their_input(tmp_path):
  noisy = clean_images(2, 8)
  calls = []
  apply = lambda x: calls.append(len(x)) or x * 0.5
  first = cache.cached(str(tmp_path), apply, 'half', noisy)
  again = cache.cached(str(tmp_path), apply, 'half', noisy)
  np.testing.assert_array_equal(first, again)
  assert calls == [2]
  per = cache.cached_per_image(str(tmp_path), apply, 'half',
                               [noisy[0], clean_images(1, 12)[0]])
  assert calls == [2, 1, 1] and per[1].shape == (12, 12, 1)
  cache.cached_per_image(str(tmp_path), apply, 'half', list(noisy))
  assert calls == [2, 1, 1, 1]  # Only the second image is new.
  assert all(f.endswith('.npy') for f in os.listdir(tmp_path))


def test_a_folder_split_is_named_as_a_concept(tmp_path):
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'a.png')
  with pytest.raises(errors.UserError, match="split 'dev' of folder") as e:
    images.folder_images(str(tmp_path), 'dev')
  assert '--' not in str(e.value)


def test_bm3d_is_an_optional_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'bm3d', None)  # As if not installed.
  assert not baselines.installed('bm3d') and baselines.installed('nlm')
  assert 'bm3d' not in baselines.default_names()
  assert baselines.choose(['noisy', 'bm3d'], skip_slow=True) == ['noisy']
  with pytest.raises(errors.MissingExtra, match=r'xdn\[baselines\]'):
    baselines.choose(['noisy', 'bm3d'])
  with pytest.raises(errors.MissingExtra, match='BM3D baseline'):
    baselines.apply('bm3d', np.zeros((8, 8), np.float32), 'gaussian', 25.0)
  out = baselines.apply('nlm', np.full((8, 8), 0.5, np.float32), 'gaussian',
                        25.0)
  assert out.shape == (8, 8)


def test_settings_read_back_as_recorded():
  """`settings.from_json` gives back what `as_json` recorded (calibrations
  read earlier runs' settings so), presets included."""
  from xdn.evaluation import settings as settings_lib  # pylint: disable=g-import-not-at-top
  for setting in settings_lib.parse(
      ['gaussian:25', 'correlated_gaussian:25,0.6', 'xray:1000,0.4',
       'poisson:50', 'gaussian_medium']):
    assert settings_lib.from_json(settings_lib.as_json(setting)) == setting
