"""xdn.cli.evaluate: the noise grid, the table, and the CLI end to end."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from scipy import ndimage
from scipy import stats

from xdn.configs import default
from xdn.cli import evaluate
from xdn.data import pipeline
from tests.denoise_test import FakeDenoiser
from tests.denoise_test import make_workdir
from tests.denoise_test import tiny_unet_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clean_images(n: int = 3, size: int = 32) -> np.ndarray:
  rng = np.random.default_rng(0)
  images = ndimage.gaussian_filter(rng.random((n, size, size)), (0, 3, 3))
  images = (images - images.min()) / (images.max() - images.min())
  return (0.1 + 0.8 * images)[..., None].astype(np.float32)


def box_blur(images):
  return ndimage.uniform_filter(images, size=(1, 3, 3, 1), mode='nearest')


# ---------------------------------------------------------------- settings


def test_default_grid_covers_the_issue():
  settings = [evaluate.parse_setting(s) for s in evaluate.DEFAULT_SETTINGS]
  gaussian = {round(s.level, 1) for s in settings if s.kind == 'gaussian'}
  assert {15.0, 25.0, 50.0, 16.1, 22.8, 36.1} <= gaussian
  assert len([s for s in settings if s.kind == 'poisson']) >= 2
  assert {s.level for s in settings if s.kind == 'salt_and_pepper'} == {
      0.03, 0.10, 0.25}
  assert len({s.label for s in settings}) == len(settings)  # Unique rows.


def test_parse_setting():
  assert evaluate.parse_setting('gaussian:25') == evaluate.Setting(
      'gaussian', 25.0)
  preset = evaluate.parse_setting('salt_and_pepper_hard')
  assert (preset.kind, preset.level) == ('salt_and_pepper', 0.25)
  assert preset.label == 'salt_and_pepper_hard (25%)'
  for bad in ('gaussian', 'gaussian:x', 'blur:3', 'gaussian:-1'):
    with pytest.raises(ValueError):
      evaluate.parse_setting(bad)
  with pytest.raises(ValueError, match='--settings'):
    evaluate.parse_setting('gaussian')


def test_noise_depends_only_on_seed_and_setting():
  clean = clean_images()
  a = evaluate.parse_setting('gaussian:25')
  first = evaluate.noisy_images(clean, a, seed=0)
  np.testing.assert_array_equal(first, evaluate.noisy_images(clean, a, 0))
  assert not np.array_equal(first, evaluate.noisy_images(clean, a, 1))
  other = evaluate.noisy_images(clean, evaluate.parse_setting('gaussian:15'),
                                0)
  # Different settings do not share a noise pattern (scaled copies).
  assert abs(np.corrcoef((first - clean).ravel(),
                         (other - clean).ravel())[0, 1]) < 0.2
  assert first.min() >= 0 and first.max() <= 1  # Clipped.


# ------------------------------------------------------------- the table


def test_evaluate_scores_models_and_baselines_on_the_same_noise():
  clean = clean_images()
  settings = [evaluate.parse_setting(s)
              for s in ('gaussian:25', 'salt_and_pepper_medium')]
  models = {'identity': FakeDenoiser(), 'blur': FakeDenoiser(box_blur)}
  result = evaluate.evaluate(clean, settings, models, ['noisy', 'median'],
                             seed=0, figure_setting=settings[1],
                             figure_image=2)
  assert result.methods == ['noisy input', 'identity', 'blur', 'median']
  assert len(result.rows) == 2 * 4
  by = {(r['setting'], r['method']): r for r in result.rows}
  for s in settings:
    # The identity model sees exactly the noisy images of the baseline row.
    assert by[(s.label, 'identity')]['psnr'] == pytest.approx(
        by[(s.label, 'noisy input')]['psnr'], abs=1e-5)
    assert by[(s.label, 'blur')]['psnr'] > by[(s.label, 'noisy input')]['psnr']
  sp = settings[1].label
  assert by[(sp, 'median')]['psnr'] > by[(sp, 'blur')]['psnr']
  # The figure shows the requested setting and image.
  assert result.figure_setting == settings[1]
  np.testing.assert_array_equal(result.figure['clean'], clean[2, ..., 0])
  np.testing.assert_array_equal(
      result.figure['noisy'],
      evaluate.noisy_images(clean, settings[1], 0)[2, ..., 0])

  table = evaluate.markdown_table(result)
  lines = table.strip().split('\n')
  assert lines[0] == '| noise | noisy input | identity | blur | median |'
  assert len(lines) == 2 + len(settings)
  sp_row = next(l for l in lines if l.startswith(f'| {sp}'))
  assert sp_row.split('|')[-2].strip().startswith('**')  # Median is best.
  assert sp_row.count('**') == 4  # Best PSNR and best SSIM.


def test_fixed_size_models_are_tiled_on_larger_images():
  clean = clean_images(2, 40)
  out = evaluate.apply_model(FakeDenoiser(box_blur, fixed_size=16), clean)
  assert out.shape == clean.shape
  np.testing.assert_allclose(out[:, 8:-8, 8:-8], box_blur(clean)[:, 8:-8, 8:-8],
                             atol=0.02)


def test_model_labels_and_workdir_lists():
  assert evaluate.split_workdirs(['runs/a,runs/b', 'runs/c', ' ']) == [
      'runs/a', 'runs/b', 'runs/c']
  fakes = [FakeDenoiser(name=n) for n in ('unet', 'vae', 'unet')]
  assert evaluate.model_labels(fakes, ['r/u1', 'r/v', 'r/u2/']) == [
      'unet (u1)', 'vae', 'unet (u2)']
  assert evaluate.choose_baselines(['noisy', 'bm3d', 'tv'], True) == [
      'noisy', 'tv']
  with pytest.raises(ValueError, match='--baselines'):
    evaluate.choose_baselines(['bm3e'], False)


# --------------------------------------------------------------- end to end


def clipped_gaussian_psnr(clean: np.ndarray, sigma: float) -> float:
  """Mean PSNR of clip(x + n) against x, n ~ N(0, sigma^2), in closed form."""
  a, b = -clean / sigma, (1 - clean) / sigma  # Clip bounds of n / sigma.
  # E[n^2; a < n/sigma < b] + a^2 P(n/sigma < a) + b^2 P(n/sigma > b).
  inside = (stats.norm.cdf(b) - stats.norm.cdf(a)
            - b * stats.norm.pdf(b) + a * stats.norm.pdf(a))
  mse = sigma**2 * (inside + a**2 * stats.norm.cdf(a) + b**2 * stats.norm.sf(b))
  per_image = mse.reshape(len(clean), -1).mean(axis=1)
  return float(np.mean(-10 * np.log10(per_image)))


def test_cli_end_to_end(tmp_path, sample_data_dir):
  run_a = make_workdir(str(tmp_path / 'a'), tiny_unet_config(sample_data_dir))
  run_b = str(tmp_path / 'b')
  shutil.copytree(run_a, run_b)  # A second model, without a second init.
  out = tmp_path / 'report'
  cmd = [sys.executable, '-m', 'xdn.cli.evaluate', f'--workdir={run_a}',
         f'--workdir={run_b}', f'--out={out}', '--num_images=4',
         '--skip_slow', '--baselines=noisy,median,tv,bm3d',
         '--settings=gaussian:25,salt_and_pepper_easy',
         f'--data_dir={sample_data_dir}']
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in evaluate.RESULT_FILES:
    assert os.path.getsize(out / name) > 0, name
  assert '| noise | noisy input | unet (a) | unet (b) | median | TV |' in (
      result.stdout)
  with open(out / 'eval_results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * 5 and {r['num_images'] for r in rows} == {'4'}
  assert Image.open(out / 'eval_figure.png').size[0] > 500

  with open(out / 'eval_results.json') as f:
    results = json.load(f)
  assert [m['step'] for m in results['models']] == [0, 0]  # Untrained.
  assert 'bm3d' not in results['baselines']  # --skip_slow.
  noisy = next(r for r in results['results']
               if r['kind'] == 'gaussian' and r['method'] == 'noisy input')
  config = default.get_config()
  config.data.data_dir = sample_data_dir
  config.data.num_eval_images = 4
  clean = pipeline.eval_images(config.data, config.data.test_split)
  want = clipped_gaussian_psnr(clean.astype(np.float64), 25 / 255)
  assert want > 20.17  # Clipping removes some noise: above 20*log10(255/25).
  assert noisy['psnr'] == pytest.approx(want, abs=0.25)
