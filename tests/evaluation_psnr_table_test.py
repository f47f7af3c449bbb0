"""xdn.evaluation.psnr_table and methods: the table, its files, the models'
columns."""

import csv
import json
import os

import numpy as np
import pytest
from scipy import ndimage

from xdn.evaluation import methods
from xdn.evaluation import psnr_table
from xdn.evaluation import settings
from xdn.io import atomic
from tests.denoise_test import FakeDenoiser
from tests.evaluation_settings_test import clean_images


def box_blur(images):
  return ndimage.uniform_filter(images, size=(1, 3, 3, 1), mode='nearest')


def test_evaluate_scores_models_and_baselines_on_the_same_noise():
  clean = clean_images()
  grid = settings.parse(['gaussian:25', 'salt_and_pepper_medium'])
  models = {'identity': FakeDenoiser(), 'blur': FakeDenoiser(box_blur)}
  result = psnr_table.evaluate(clean, grid, models, ['noisy', 'median'],
                               seed=0, figure_setting=grid[1],
                               figure_image=2)
  assert result.methods == ['noisy input', 'identity', 'blur', 'median']
  assert len(result.rows) == 2 * 4
  by = {(r['setting'], r['method']): r for r in result.rows}
  for s in grid:
    # The identity model sees exactly the noisy images of the baseline row.
    assert by[(s.label, 'identity')]['psnr'] == pytest.approx(
        by[(s.label, 'noisy input')]['psnr'], abs=1e-5)
    assert by[(s.label, 'blur')]['psnr'] > by[(s.label, 'noisy input')]['psnr']
  sp = grid[1].label
  assert by[(sp, 'median')]['psnr'] > by[(sp, 'blur')]['psnr']
  # The figure shows the requested setting and image.
  assert result.figure_setting == grid[1]
  np.testing.assert_array_equal(result.figure['clean'], clean[2, ..., 0])
  np.testing.assert_array_equal(
      result.figure['noisy'],
      settings.noisy_images(clean, grid[1], 0)[2, ..., 0])

  table = psnr_table.markdown_table(result)
  lines = table.strip().split('\n')
  assert lines[0] == '| noise | noisy input | identity | blur | median |'
  assert len(lines) == 2 + len(grid)
  sp_row = next(l for l in lines if l.startswith(f'| {sp}'))
  assert sp_row.split('|')[-2].strip().startswith('**')  # Median is best.
  assert sp_row.count('**') == 4  # Best PSNR and best SSIM.


def test_images_of_several_sizes_are_scored_one_by_one():
  clean = [clean_images(1, 24)[0], clean_images(1, 40)[0]]
  grid = settings.parse(['gaussian:25'])
  result = psnr_table.evaluate(clean, grid, {'blur': FakeDenoiser(box_blur)},
                               ['noisy'])
  rows = {r['method']: r for r in result.rows}
  assert rows['blur']['num_images'] == 2
  assert rows['blur']['psnr'] > rows['noisy input']['psnr']


def test_written_files_are_whole_and_leave_no_temporaries(tmp_path):
  clean = clean_images(2, 16)
  grid = settings.parse(['gaussian:25'])
  result = psnr_table.evaluate(clean, grid, {'id': FakeDenoiser()},
                               ['noisy'])
  meta = {'data': 'd', 'split': 's', 'num_images': 2, 'seed': 0}
  out = str(tmp_path / 'new' / 'folder')
  table = psnr_table.write_results(out, result, meta)
  psnr_table.save_figure(os.path.join(out, 'eval_figure.png'), result)
  assert sorted(os.listdir(out)) == sorted(psnr_table.RESULT_FILES)
  assert not any(atomic.is_temporary(f) for f in os.listdir(out))
  with open(os.path.join(out, 'eval_results.md'), encoding='utf-8') as f:
    assert f.read().endswith(table) and 'σ=25' in table
  with open(os.path.join(out, 'eval_results.csv'), newline='',
            encoding='utf-8') as f:
    assert [r['method'] for r in csv.DictReader(f)] == ['noisy input', 'id']
  with open(os.path.join(out, 'eval_results.json'), encoding='utf-8') as f:
    saved = json.load(f)
  assert saved['settings'][0] == {'kind': 'gaussian', 'level': 25.0,
                                  'preset': '', 'correlation': 0.0,
                                  'label': 'gaussian σ=25'}


def test_fixed_size_models_are_tiled_on_larger_images():
  clean = clean_images(2, 40)
  out = methods.apply_model(FakeDenoiser(box_blur, fixed_size=16), clean)
  assert out.shape == clean.shape
  np.testing.assert_allclose(out[:, 8:-8, 8:-8], box_blur(clean)[:, 8:-8, 8:-8],
                             atol=0.02)


def test_model_labels():
  fakes = [FakeDenoiser(name=n) for n in ('unet', 'vae', 'unet')]
  assert methods.model_labels(fakes, ['r/u1', 'r/v', 'r/u2/']) == [
      'unet (u1)', 'vae', 'unet (u2)']
