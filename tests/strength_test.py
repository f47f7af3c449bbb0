"""Strength levels: parsing, the model's factors, and what each level does."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xdn import errors
from xdn.evaluation import calibration as strength_calibration
from xdn.evaluation import fidelity as fidelity_report
from xdn import examples
from xdn.inference import denoiser as inference
from xdn.inference import strength
from xdn.io import radiographs as radiograph_io
from xdn.noise import estimation as noise_estimation
from xdn.noise import spec
from xdn.noise import synthetic as noise
from xdn import pretrained

CALIBRATED = {'strength_levels': {'low': 0.55, 'medium': 0.7, 'high': 0.8,
                                  'full': 1.0}}


@pytest.fixture(scope='module')
def shipped():
  return inference.load_pretrained()


def test_parse_names_numbers_and_errors():
  assert strength.parse('Medium') == 'medium'
  assert strength.parse(' full ') == 'full'
  assert strength.parse('0.8') == 0.8 and strength.parse(1) == 1.0
  for bad in ('strong', '0', '-0.5', '2.5', 'nan'):
    with pytest.raises(errors.UserError, match='strength'):
      strength.parse(bad)


def test_factors_of_calibrated_and_uncalibrated_models():
  assert strength.factor('medium', CALIBRATED) == 0.7
  assert strength.factor(None, CALIBRATED) == 0.7  # The default: medium.
  assert strength.factor(0.85, CALIBRATED) == 0.85
  assert strength.factor('full', {}) == 1.0
  assert strength.factor(None, {}) == 1.0  # Uncalibrated: as before.
  with pytest.raises(errors.UserError, match='no calibrated strength'):
    strength.factor('low', {}, 'mine')
  assert strength.describe('medium', CALIBRATED) == 'medium (s 0.70)'
  assert strength.describe(0.5, {}) == 's 0.50'


def test_levels_per_correlation_are_interpolated():
  config = {'strength_levels': {'medium': [[0.0, 0.7], [0.4, 0.6],
                                           [0.7, 0.45]], 'low': 0.5}}
  assert strength.factor('medium', config) == pytest.approx(0.7)
  assert strength.factor('medium', config, correlation=0.2) == \
      pytest.approx(0.65)
  assert strength.factor('medium', config, correlation=0.9) == \
      pytest.approx(0.45)
  assert strength.factor('low', config, correlation=0.6) == 0.5
  assert strength.describe('medium', config) == (
      'medium (s 0.70; 0.60 at rho 0.4; 0.45 at rho 0.7)')


def test_levels_over_noise_level_and_correlation_are_interpolated():
  # Two correlations, each with its own noise levels: linear in rho and
  # in log sigma, constant beyond the table.
  table = [[0.0, 2.0, 0.9], [0.0, 8.0, 0.7], [0.0, 32.0, 0.6],
           [0.6, 4.0, 0.8], [0.6, 16.0, 0.5]]
  config = {'strength_levels': {'medium': table, 'low': 0.5}}
  at = lambda rho, sigma: strength.factor('medium', config, correlation=rho,
                                          sigma=sigma)
  assert at(0.0, 2.0) == pytest.approx(0.9)
  assert at(0.0, 4.0) == pytest.approx(0.8)  # Half-way in log sigma.
  assert at(0.0, 1.0) == pytest.approx(0.9)  # Below the table.
  assert at(0.0, 100.0) == pytest.approx(0.6)  # Above it.
  assert at(0.6, 8.0) == pytest.approx(0.65)
  assert at(0.3, 8.0) == pytest.approx((0.7 + 0.65) / 2)
  assert at(0.9, 1.0) == pytest.approx(0.8)
  # Unknown noise: the reference level.
  assert strength.factor('medium', config, correlation=0.0) == \
      pytest.approx(at(0.0, strength.REFERENCE_SIGMA))
  assert strength.describe('medium', config) == (
      'medium (s 0.50-0.90 by noise level and correlation)')
  # The loaders read it from a workdir's file; mixed or broken tables are
  # refused.
  for bad in ([[0.0, 0.7], [0.4, 2.0, 0.6]], [[0.0, 0.0, 0.7]], [],
              [[0.0, 2.0, 0.7, 2.0]],
              [[0.0, 2.0, 0.7], [0.4, 2.0, 0.6, 1.0]]):
    with pytest.raises(ValueError):
      strength.calibrated_levels({'strength_levels': {'medium': bad}})


def test_each_estimate_names_its_noise_level_at_mid_grey():
  known = noise_estimation.known_noise
  assert known('gaussian', 6, 0).std_at() == pytest.approx(6.0)
  assert known('correlated_gaussian', 3, 0, 0.5).std_at() == \
      pytest.approx(3.0)
  # Poisson: var = x / dose.
  assert known('poisson', 50, 0).std_at() == \
      pytest.approx(255 * np.sqrt(0.5 / 50))
  assert known('poisson', 50, 0).std_at(0.2) == \
      pytest.approx(255 * np.sqrt(0.2 / 50))
  # X-ray: its own law, not the line beside it; more quanta, less noise.
  xray = known('xray', 1000, 0)
  assert xray.std_at() == pytest.approx(255 * np.sqrt(
      noise_estimation.xray_variance_np(np.float64(0.5), 1000.0)))
  assert known('xray', 4000, 0).std_at() < xray.std_at()


def test_denoiser_reads_the_table_at_each_images_noise_level(shipped):
  config = shipped.config.copy_and_resolve_references()
  with config.unlocked():
    config.inference.strength_levels = {
        'medium': [[0.0, 2.0, 0.9], [0.0, 25.0, 0.6], [0.5, 2.0, 0.8],
                   [0.5, 25.0, 0.5]]}
  denoiser = inference.Denoiser(config, shipped.variables, 0, 'card')
  known = noise_estimation.known_noise
  told = [known('gaussian', 2, 0), known('gaussian', 25, 0),
          known('correlated_gaussian', 2, 0, 0.5), known('gaussian', 50, 0)]
  np.testing.assert_allclose(denoiser.strength_factors(told, 4),
                             [0.9, 0.6, 0.8, 0.6], rtol=1e-6)


def test_noise_groups_pool_close_levels_within_a_correlation():
  Setting = spec.NoiseSpec
  settings = [Setting('gaussian', 2.0), Setting('gaussian', 25.0),
              Setting('poisson', 50.0), Setting('gaussian', 8.0),
              Setting('correlated_gaussian', 25.0, 0.4)]
  level = {'gaussian σ=2': 2.9, 'gaussian σ=25': 25.2,
           'poisson dose=50': 27.0, 'gaussian σ=8': 8.3,
           'correlated_gaussian σ=25 ρ=0.40': 25.1}
  points = strength_calibration.noise_groups(settings, level.get)
  assert [(p.rho, p.labels) for p in points] == [
      (0.0, ['gaussian σ=2']), (0.0, ['gaussian σ=8']),
      (0.0, ['gaussian σ=25', 'poisson dose=50']),
      (0.4, ['correlated_gaussian σ=25 ρ=0.40'])]
  assert points[2][1] == pytest.approx(np.sqrt(25.2 * 27.0), abs=0.01)
  assert points[0][1] == 2.9
  # X-ray noise is a group of its own, beside Gaussian noise of its rho.
  settings.append(Setting('xray', 1000.0, 0.4))
  level['xray N0=1000 ρ=0.40'] = 24.0
  points = strength_calibration.noise_groups(
      settings, level.get, xray_of=lambda label: label.startswith('xray'))
  assert [(p.rho, p.xray, p.labels) for p in points[-2:]] == [
      (0.4, False, ['correlated_gaussian σ=25 ρ=0.40']),
      (0.4, True, ['xray N0=1000 ρ=0.40'])]


def test_x_ray_noise_reads_its_own_rows():
  """X-ray quantum noise needs a lower factor than Gaussian noise of the
  same std at mid grey: a table with a law column reads each image at its
  own law's rows, and at the others' where its law has none."""
  curve = lambda crossing: [
      {'factor': f, 'npw_ratio': 1.0 - max(f - crossing, 0),
       'cho_ratio': 1.0, 'transfer_mean': 1.0} for f in (0.3, 0.5, 0.7, 0.9)]
  curves = {'gauss': curve(0.6), 'gauss25': curve(0.6), 'xray': curve(0.4)}
  table = strength_calibration.table_from_curves(
      [(0.4, 6.0, 'gauss'), (0.4, 25.0, 'gauss25', False),
       (0.4, 6.2, 'xray', True)], curves)
  medium = table['levels']['medium']
  assert sorted(row[3] for row in medium) == [0.0, 0.0, 1.0]
  config = {'strength_levels': table['levels']}
  gauss = strength.factor('medium', config, correlation=0.4, sigma=6.0)
  xray = strength.factor('medium', config, correlation=0.4, sigma=6.0,
                         xray=True)
  assert gauss == pytest.approx(0.6) and xray == pytest.approx(0.4)
  # At any correlation, and through each image's estimate.
  known = noise_estimation.known_noise
  estimates = [known('correlated_gaussian', 6, 0, 0.4),
               known('xray', 1000, 0, 0.4)]
  factors = strength.factors('medium', config, 'm', estimates, 2)
  assert factors[0] == pytest.approx(0.6) and factors[1] == pytest.approx(
      0.4)
  # A law the table has no rows of reads the other rows.
  only_gauss = {'strength_levels': {'medium': [
      row for row in medium if row[3] == 0.0]}}
  assert strength.factor('medium', only_gauss, correlation=0.4, sigma=6.0,
                         xray=True) == pytest.approx(0.6)
  # Without X-ray points the table keeps three columns.
  plain = strength_calibration.table_from_curves([(0.4, 6.0, 'gauss')],
                                                 curves)
  assert all(len(row) == 3 for row in plain['levels']['medium'])


def test_calibration_gives_weak_noise_its_own_higher_factor(tmp_path):
  """A stand-in denoiser whose blur grows with the noise it is told (as a
  denoiser's does): at sigma 4 a level allows a higher factor than at
  sigma 24, and the table holds each, read back at each point."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  image = np.asarray(radiograph_io.read_radiograph(examples.EXAMPLE).pixels,
                     np.float32)[:192, :192]

  class Blur:
    def at_strength(self, f):
      return f

  def apply(f, noisy, told):
    return ndimage.gaussian_filter(noisy, 0.15 * f * told.std_at())

  def make(image, setting, index):
    rng = np.random.default_rng(1000 * index + int(setting.level))
    return np.clip(image + rng.normal(0, setting.level / 255, image.shape),
                   0, 1).astype(np.float32)

  settings = [spec.NoiseSpec('gaussian', 4.0), spec.NoiseSpec('gaussian',
                                                               24.0)]
  result = strength_calibration.calibrate(
      [image, image[::-1]], settings, Blur(), make, apply,
      factors=(0.2, 0.4, 0.6, 0.8, 1.0), sizes=(3.0,), per_size=6)
  medium = result['levels']['medium']
  assert [rho for rho, _, _ in medium] == [0.0, 0.0]
  (_, weak, f_weak), (_, strong, f_strong) = medium
  assert weak < 8 and strong > 18, medium
  assert f_weak > f_strong + 0.1, medium
  config = {'strength_levels': result['levels']}
  at = lambda sigma: strength.factor('medium', config, sigma=sigma)
  assert at(weak) == pytest.approx(f_weak)
  assert at(strong) == pytest.approx(f_strong)
  assert all(result['floors_met'].values()), result['floors_met']
  # A later run of one setting that extends this one (its written rows)
  # gives the same table; one of other lesions is refused in one line.
  meta = {'data': 'd', 'split': 'validation', 'num_images': 2, 'seed': 0,
          'read_noise': 2.0, 'factors': [0.2, 0.4, 0.6, 0.8, 1.0],
          'sizes': [3.0], 'per_size': 6, 'target_d_prime': 2.5,
          'setting_specs': [{'kind': s.kind, 'level': s.level,
                             'correlation': 0.0, 'preset': ''}
                            for s in settings]}
  strength_calibration.write(str(tmp_path), result, meta)
  earlier = strength_calibration.earlier_rows(str(tmp_path), settings[1:],
                                              meta)
  assert [s.label for s, _ in earlier] == [settings[0].label]
  again = strength_calibration.calibrate(
      [image, image[::-1]], settings[1:], Blur(), make, apply,
      factors=(0.2, 0.4, 0.6, 0.8, 1.0), sizes=(3.0,), per_size=6,
      earlier=earlier)
  assert again['levels'] == result['levels']
  with pytest.raises(errors.UserError, match='per_size') as e:
    strength_calibration.earlier_rows(str(tmp_path), settings[1:],
                                      {**meta, 'per_size': 20})
  assert '\n' not in str(e.value)


def test_denoiser_tells_each_image_its_levels_factor(shipped):
  config = shipped.config.copy_and_resolve_references()
  with config.unlocked():
    config.inference.strength_levels = {'medium': [[0.0, 0.8], [0.6, 0.5]]}
  denoiser = inference.Denoiser(config, shipped.variables, 0, 'card')
  told = [noise_estimation.known_noise('gaussian', 20, 0),
          noise_estimation.known_noise('correlated_gaussian', 20, 0, 0.3)]
  np.testing.assert_allclose(denoiser.strength_factors(told, 2),
                             [0.8, 0.65], rtol=1e-6)
  assert denoiser.strength == 'medium'


def test_strongest_meeting_interpolates_and_bounds():
  factors, values = [0.4, 0.6, 0.8, 1.0], [1.0, 0.98, 0.94, 0.90]
  # 0.95 is crossed a quarter of the way from 0.6 to 0.8... (0.98 -> 0.94).
  assert strength_calibration.strongest_meeting(factors, values, 0.95) == \
      pytest.approx(0.75)
  assert strength_calibration.strongest_meeting(factors, values, 0.5) == 1.0
  assert strength_calibration.strongest_meeting(factors, values, 1.5) == 0.4
  curve = [{'factor': f, 'npw_ratio': v, 'cho_ratio': v, 'transfer_mean': t}
           for f, v, t in zip(factors, values, [0.99, 0.96, 0.9, 0.8])]
  result = strength_calibration.levels_from_curve(curve)
  levels = result['levels']
  assert levels['full'] == 1.0
  assert levels['medium'] == pytest.approx(0.75)
  assert levels['low'] <= levels['medium'] <= levels['high'] <= 1.0
  assert result['floors_met'] == {'low': True, 'medium': True, 'high': True}
  # Medium needs CHO d' too: a CHO that falls sooner binds.
  for row, cho in zip(curve, [1.0, 0.96, 0.9, 0.85]):
    row['cho_ratio'] = cho
  assert strength_calibration.levels_from_curve(curve)['levels'][
      'medium'] == pytest.approx(0.6 + 0.2 * 0.01 / 0.06, abs=1e-3)


def test_denoiser_strength_scales_the_noise_it_is_told(shipped):
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:96, 0:96] / 96
  clean = np.clip(0.5 + 0.2 * np.sin(6 * x + 3 * y), 0, 1)
  noisy = np.clip(clean + rng.normal(0, 20 / 255, clean.shape),
                  0, 1).astype(np.float32)[None, ..., None]
  told = [noise_estimation.known_noise('gaussian', 20, 0)]
  half, full = (dataclasses.replace(shipped.at_strength(s),
                                    target_noise_sigma=0.0)
                for s in (0.5, 'full'))
  assert half.variables is shipped.variables  # Shared, nothing reloaded.
  assert half.programs is shipped.programs  # Nothing recompiled.
  # Told 0.5 x sigma 20 is told sigma 10: the same input maps.
  np.testing.assert_allclose(
      half(noisy, told),
      full(noisy, [noise_estimation.known_noise('gaussian', 10, 0)]),
      atol=1e-5)
  residual = lambda d: np.std(noisy - d(noisy, told))
  assert residual(half) < 0.8 * residual(full)
  with pytest.raises(errors.UserError, match='strength'):
    shipped.at_strength('strongest')


def _ordering_setup():
  image = radiograph_io.read_radiograph(examples.EXAMPLE).pixels
  return [np.asarray(image, np.float32)]


def test_stronger_levels_leave_less_noise_and_lower_d_prime(shipped):
  """On a fixed image: the lower the factor, the more residual noise and
  the higher the lesions' NPW d' (up to the input's)."""
  clean = _ordering_setup()
  make = lambda image, setting, index: np.clip(image + np.asarray(
      jax.random.normal(jax.random.fold_in(jax.random.key(7), index),
                        image.shape)) * 20 / 255, 0, 1).astype(np.float32)
  told = noise_estimation.known_noise('gaussian', 20, 0)
  methods = {f'{f}': (lambda d: lambda n, s: inference.denoise_image(
      d, n, noise_level=told))(shipped.at_strength(f))
             for f in (0.4, 0.7, 1.0)}
  setting = spec.NoiseSpec('gaussian', 20.0)
  result = fidelity_report.evaluate_fidelity(
      clean, [setting], methods, make, sizes=(3.0, 5.0), per_size=8,
      discs=6, disc_radius=10.0, seed=1)
  rows = {r['method']: r for r in result['rows']}
  std = [rows[k]['noise_std'] for k in ('0.4', '0.7', '1.0')]
  d_prime = [rows[k]['npw_ratio'] for k in ('0.4', '0.7', '1.0')]
  assert std[0] > std[1] > std[2], std
  assert d_prime[0] > d_prime[2], d_prime
  assert d_prime[0] <= 1.05  # No processing beats the ideal observer.
  assert rows['noisy input']['npw_ratio'] == pytest.approx(1.0)
  assert rows['1.0']['psnr'] > rows['noisy input']['psnr'] + 5


def test_loaders_read_calibrated_levels(tmp_path):
  folder = tmp_path / 'model'
  shutil.copytree(pretrained.FOLDER, folder)
  (folder / strength.LEVELS_FILE).write_text(json.dumps(
      {'levels': {'low': 0.5, 'medium': 0.6, 'high': 0.7, 'full': 1.0}}))
  denoiser = inference.load(str(folder))
  assert denoiser.strength == 'medium' and denoiser.strength_factor == 0.6
  assert inference.load(str(folder), strength='low').strength_factor == 0.5
  (folder / strength.LEVELS_FILE).write_text('not json')
  with pytest.raises(errors.UserError, match='strength-levels file'):
    inference.load(str(folder))


def test_models_without_a_noise_map_refuse_a_strength(shipped):
  config = shipped.config.copy_and_resolve_references()
  config.model.noise_map = False
  config.model.correlation_map = False
  with pytest.raises(errors.UserError, match='takes no noise level') as e:
    inference.Denoiser(config, shipped.variables, 0, 'plain', strength=0.5)
  assert '--' not in str(e.value)  # A library error names no flag.


def test_export_carries_the_calibrated_levels(tmp_path):
  from xdn.inference import export  # pylint: disable=g-import-not-at-top
  from tests.denoise_test import make_workdir  # pylint: disable=g-import-not-at-top
  from tests.denoise_test import tiny_unet_config  # pylint: disable=g-import-not-at-top
  config = tiny_unet_config()
  config.model.noise_map = True
  workdir = make_workdir(str(tmp_path / 'run'), config)
  levels = {'low': 0.5, 'medium': 0.65, 'high': 0.75, 'full': 1.0}
  (tmp_path / 'run' / strength.LEVELS_FILE).write_text(
      json.dumps({'levels': levels}))
  export.export(workdir, str(tmp_path / 'model'))
  exported = inference.load(str(tmp_path / 'model'))
  assert strength.calibrated_levels(exported.config.inference) == {
      k: [(0.0, v)] for k, v in levels.items()}
  assert exported.strength == 'medium' and exported.strength_factor == 0.65


def test_points_under_twice_the_clean_images_own_noise_give_no_factor():
  """The clean images' own noise is anatomy to the observer, so a point
  near it is biased against the denoiser: reported, left out of the
  table, whose lowest point then holds below it."""
  curve = lambda crossing: [
      {'factor': f, 'npw_ratio': 1.0 - 0.1 * max(f - crossing, 0) / 0.1,
       'cho_ratio': 1.0, 'transfer_mean': 1.0} for f in (0.3, 0.5, 0.7, 0.9)]
  curves = {'weak': curve(0.3), 'mid': curve(0.6), 'strong': curve(0.5)}
  points = [(0.0, 2.5, 'weak'), (0.0, 6.0, 'mid'), (0.0, 25.0, 'strong')]
  table = strength_calibration.table_from_curves(points, curves,
                                                 own_noise_sigma=1.6)
  assert table['left_out'] == ['weak']
  medium = table['levels']['medium']
  assert [sigma for _, sigma, _ in medium] == [6.0, 25.0]
  config = {'strength_levels': table['levels']}
  assert strength.factor('medium', config, sigma=2.0) == pytest.approx(
      medium[0][2])
  # Without own noise every point counts.
  every = strength_calibration.table_from_curves(points, curves)
  assert every['left_out'] == [] and len(every['levels']['medium']) == 3
  # A point where no factor keeps medium's definition gives medium no
  # factor (its neighbours hold there) but still gives high one.
  curves['hopeless'] = [dict(row, npw_ratio=0.92)
                        for row in curve(0.3)]
  table = strength_calibration.table_from_curves(
      points + [(0.0, 50.0, 'hopeless')], curves, own_noise_sigma=1.6)
  assert [s for _, s, _ in table['levels']['medium']] == [6.0, 25.0]
  assert [s for _, s, _ in table['levels']['high']] == [6.0, 25.0, 50.0]
  assert table['floors_met']['medium (hopeless)'] is False
  # Where no point of a correlation meets it, the smallest factor stands.
  only = strength_calibration.table_from_curves(
      [(0.0, 50.0, 'hopeless')], curves)
  assert only['levels']['medium'] == [[0.0, 50.0, 0.3]]


def test_shipped_levels_are_a_table_over_noise_level_and_correlation():
  with open(os.path.join(pretrained.FOLDER, pretrained.CONFIG)) as f:
    saved = json.load(f)
  levels = strength.calibrated_levels(saved['config']['inference'])
  for level in ('low', 'medium', 'high'):
    assert all(len(point) == 4 for point in levels[level])
    assert len({point[0] for point in levels[level]}) >= 3  # Correlations.
    assert len({point[1] for point in levels[level]}) >= 4  # Noise levels.
    # X-ray quantum noise has rows of its own, and they ask for less.
    xray = [p for p in levels[level] if p[3] == 1.0]
    assert xray
    for rho, sigma, factor, _ in xray:
      assert factor <= strength.curve_factor(levels[level], rho, sigma)
  # Each stronger level tells at least as much noise at every point.
  at = {l: {(r, s, law): f for r, s, f, law in levels[l]}
        for l in ('low', 'medium', 'high')}
  for milder, stronger in (('low', 'medium'), ('medium', 'high')):
    assert all(at[stronger][p] >= at[milder][p] for p in at[milder])
