"""xdn.cli.evaluate: its flags, and the command end to end."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from scipy import stats

from xdn.cli import evaluate
from xdn.configs import default
from xdn.data import pipeline
from xdn.evaluation import psnr_table
from tests.denoise_test import make_workdir
from tests.denoise_test import tiny_unet_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ flags


def test_workdir_lists():
  assert evaluate.split_workdirs(['runs/a,runs/b', 'runs/c', ' ']) == [
      'runs/a', 'runs/b', 'runs/c']


def _evaluate(*args, timeout=300):
  return subprocess.run([sys.executable, '-m', 'xdn.cli.evaluate', *args],
                        cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.parametrize('args,flag', [
    (['--settings=gaussian'], '--settings'),
    (['--figure_setting=blur:3'], '--figure_setting'),
    (['--baselines=noisy,bm3e'], '--baselines'),
])
def test_bad_values_name_their_flag_in_one_line(tmp_path, args, flag):
  result = _evaluate('--out', str(tmp_path), '--folder', str(tmp_path),
                     *args)
  assert result.returncode == 1, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {flag}: '), last


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
  for name in psnr_table.RESULT_FILES:
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


# ------------------------------------------------- without the bm3d extra

_WITHOUT_BM3D = '''
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] == 'bm3d':
      raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ['xdn-evaluate'] + sys.argv[1:]
from xdn.cli import evaluate
evaluate.run()
'''


def _evaluate_without_bm3d(*args):
  return subprocess.run([sys.executable, '-c', _WITHOUT_BM3D, *args],
                        cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def small_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp('small')
  rng = np.random.default_rng(0)
  for i in range(2):
    image = (np.clip(0.5 + 0.1 * rng.normal(size=(24, 24)), 0, 1) * 255)
    Image.fromarray(image.astype(np.uint8)).save(folder / f'{i}.png')
  return str(folder)


def test_without_bm3d_the_default_baselines_leave_it_out(tmp_path,
                                                         small_folder):
  out = tmp_path / 'report'
  result = _evaluate_without_bm3d(f'--folder={small_folder}', '--split=all',
                                  '--settings=gaussian:25', f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert len([l for l in result.stderr.splitlines()
              if 'left out' in l and 'xdn[baselines]' in l]) == 1
  saved = json.loads((out / 'eval_results.json').read_text())
  assert saved['baselines'] == ['noisy', 'median', 'tv', 'wavelet', 'nlm']


def test_without_bm3d_asking_for_it_is_one_line_exit_2(tmp_path,
                                                       small_folder):
  result = _evaluate_without_bm3d(f'--folder={small_folder}', '--split=all',
                                  '--baselines=noisy,bm3d',
                                  f'--out={tmp_path}')
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  assert 'pip install "xdn[baselines]"' in result.stderr.splitlines()[-1]
