"""The task-based report and strength calibration, through xdn-evaluate."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from scipy import ndimage
import pytest

from xdn.evaluation import fidelity as fidelity_report
from xdn import examples
from xdn.inference import strength
from xdn.noise import spec
from tests.denoise_test import make_workdir
from tests.denoise_test import tiny_unet_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evaluate(*args):
  return subprocess.run([sys.executable, '-m', 'xdn.cli.evaluate', *args],
                        cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def example_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp('images')
  shutil.copy(examples.EXAMPLE, folder)
  return str(folder)


def _smooth_image_and_noise():
  """A smooth 384² stand-in image and its noise (std 0.05, one draw per
  index)."""
  rng = np.random.default_rng(0)
  clean = [np.clip(0.5 + ndimage.gaussian_filter(rng.normal(0, 0.4, (384,
                                                                      384)), 8),
                   0.1, 0.9).astype(np.float32)]
  make = lambda image, setting, index: np.clip(image + np.random.default_rng(
      index).normal(0, 0.05, image.shape), 0, 1).astype(np.float32)
  return clean, make


def test_lesions_that_leave_no_room_for_discs_give_no_ttf_not_an_error():
  """Many lesions on a small image take every site: the report still
  comes, its TTF columns empty (nan)."""
  clean, make = _smooth_image_and_noise()
  result = fidelity_report.evaluate_fidelity(
      clean, [spec.NoiseSpec('gaussian', 12.75)],
      {'blur': lambda n, s: ndimage.gaussian_filter(n, 1.0)}, make,
      sizes=(3.0,), per_size=100, discs=6, disc_radius=10.0)
  rows = {r['method']: r for r in result['rows']}
  assert np.isnan(rows['blur']['ttf_low_f50'])
  assert np.isnan(rows['blur']['ttf_high_f10'])
  assert rows['blur']['npw_ratio'] > 0  # The lesion figures are there.


def test_identity_and_blur_in_the_report():
  """The noisy input scores itself 1; a blur keeps less noise, shifts the
  NPS down and loses faint lesions, in every figure at once."""
  clean, make = _smooth_image_and_noise()
  methods = {'blur': lambda n, s: ndimage.gaussian_filter(n, 1.5)}
  result = fidelity_report.evaluate_fidelity(
      clean, [spec.NoiseSpec('gaussian', 12.75)], methods, make,
      sizes=(3.0,), per_size=8, discs=6, disc_radius=10.0)
  rows = {r['method']: r for r in result['rows']}
  noisy, blur = rows['noisy input'], rows['blur']
  assert noisy['npw_ratio'] == 1.0 and noisy['nps_shape_rmsd'] == 0.0
  # Every observer is reported, scoring the input 1.
  for observer in fidelity_report.OBSERVERS:
    assert noisy[f'{observer}_ratio'] == 1.0
    assert np.isfinite(blur[f'{observer}_ratio']) and blur[
        f'{observer}_d_prime_3px'] > 0, observer
  assert noisy['ttf_low_f50'] == noisy['ttf_high_f50'] == 0.5
  assert noisy['noise_std'] == pytest.approx(0.05 * 255, rel=0.1)
  assert blur['noise_std_ratio'] < 0.3
  assert blur['nps_mean_frequency_ratio'] < 0.6
  assert blur['nps_shape_rmsd'] > 0.3
  # A linear blur of std 1.5 px: TTF f50 = sqrt(ln 2 / (2 pi^2)) / 1.5
  # at every contrast.
  f50 = np.sqrt(np.log(2) / (2 * np.pi**2)) / 1.5
  assert blur['ttf_low_f50'] == pytest.approx(f50, rel=0.1)
  assert blur['ttf_high_f50'] == pytest.approx(f50, rel=0.1)
  assert blur['transfer_mean'] < 0.95 and blur['psnr'] > noisy['psnr']


def test_cli_fidelity_report_of_two_strengths(tmp_path, example_folder):
  out = tmp_path / 'fidelity'
  result = _evaluate('--task=fidelity', '--pretrained',
                     f'--folder={example_folder}', '--split=all',
                     '--settings=gaussian:20', '--strength=full,0.6',
                     '--baselines=noisy', '--lesion_sizes=3,5',
                     '--lesions_per_size=6', f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ('fidelity_results.md', 'fidelity_results.json',
               'fidelity_frontier.png', 'fidelity_nps.png'):
    assert (out / name).stat().st_size > 0, name
  saved = json.loads((out / 'fidelity_results.json').read_text())
  rows = {r['method']: r for r in saved['rows']}
  assert set(rows) == {'noisy input', 'xdn-pretrained (full)',
                       'xdn-pretrained (0.6)'}
  full, mild = rows['xdn-pretrained (full)'], rows['xdn-pretrained (0.6)']
  assert full['noise_std'] < mild['noise_std'] < rows['noisy input'][
      'noise_std']
  assert full['psnr'] > rows['noisy input']['psnr'] + 5
  assert '| gaussian σ=20 | xdn-pretrained (0.6) |' in result.stdout
  assert 'NPWE d′ ratio' in result.stdout
  # A PNG states no pixel size: the eye filter's peak is the default's.
  assert 'unknown' in saved['eye_geometry']


def test_cli_calibration_writes_levels_a_workdir_then_uses(tmp_path,
                                                           example_folder):
  config = tiny_unet_config()
  config.model.noise_map = True
  workdir = make_workdir(str(tmp_path / 'run'), config)
  out = tmp_path / 'calibration'
  result = _evaluate('--task=calibrate', f'--workdir={workdir}',
                     f'--folder={example_folder}', '--split=all',
                     '--settings=gaussian:20,correlated_gaussian:20,0.5',
                     '--calibration_factors=0.5,1',
                     '--lesion_sizes=3', '--lesions_per_size=6',
                     f'--out={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  for folder in (out, tmp_path / 'run'):
    saved = json.loads((folder / strength.LEVELS_FILE).read_text())
    assert set(saved['levels']) == set(strength.LEVELS)
    assert saved['levels']['full'] == 1.0
    # One curve and one factor per noise: (correlation, estimated level).
    assert len(saved['curves']) == 2
    white = [name for name in saved['curves'] if name.startswith('rho 0,')]
    assert len(white) == 1
    assert [row['factor'] for row in saved['curves'][white[0]]] == [0.5, 1.0]
    points = saved['levels']['medium']
    assert [rho for rho, _, _ in points] == [0.0, 0.5]
    # The level is the images' estimate: sigma 20 added to images that
    # hold a little noise of their own.
    assert all(18 < sigma < 26 for _, sigma, _ in points), points
  assert 'Levels:' in result.stdout
  from xdn import inference  # pylint: disable=g-import-not-at-top
  denoiser = inference.load(workdir, strength='medium')
  assert denoiser.strength_factor == saved['levels']['medium'][0][2]
  bad = _evaluate('--task=calibrate', f'--workdir={workdir}',
                  f'--folder={example_folder}', '--split=all',
                  '--settings=gaussian:20', '--calibration_factors=0.5,0.7',
                  f'--out={out}')
  assert bad.returncode != 0 and 'including 1' in bad.stderr
  # One setting measured again, the other taken from the first run: the
  # same table (strength_test checks that other lesions are refused).
  more = tmp_path / 'more'
  extended = _evaluate('--task=calibrate', f'--workdir={workdir}',
                       f'--folder={example_folder}', '--split=all',
                       '--settings=gaussian:20', '--calibration_factors=0.5,1',
                       '--lesion_sizes=3', '--lesions_per_size=6',
                       f'--calibration_extends={out}', f'--out={more}')
  assert extended.returncode == 0, extended.stderr[-3000:]
  again = json.loads((more / strength.LEVELS_FILE).read_text())
  assert again['levels'] == saved['levels']
  assert again['extends'] == [str(out)]
