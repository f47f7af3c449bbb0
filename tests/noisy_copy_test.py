"""Noisy-only copies: corrupted once, 16-bit, same names and splits."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from xdn.data.chest_xray_sample import chest_xray_sample_dataset_builder as sample
from xdn.data import folder
from xdn.data import noisy_copy
from xdn.data import patient_split
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io


@pytest.fixture
def clean_dir(tmp_path):
  clean = tmp_path / 'clean'
  (clean / 'sub').mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(6):
    pixels = rng.integers(60, 200, (40, 48)).astype(np.uint8)
    path = clean / ('sub' if i == 5 else '') / f'{i // 2:08d}_{i % 2:03d}'
    Image.fromarray(pixels).save(f'{path}.{"tif" if i == 4 else "png"}')
  return str(clean)


def read(path):
  return radiograph_io.read_radiograph(str(path)).pixels


def png(name):
  return os.path.splitext(name)[0] + '.png'


def test_sample_export_keeps_files_and_patient_splits(tmp_path):
  out = str(tmp_path / 'sample')
  manifest = noisy_copy.make_copy('chest_xray_sample', out, 'none')
  assert manifest['num_images'] == 800
  rows = sample.read_labels(sample._DATA_DIR / 'labels.csv')  # pylint: disable=protected-access
  split_of = patient_split.assign_patients(
      (row['patient_id'] for row in rows), sample.SPLIT_FRACTIONS)
  exported = folder.split_files(folder.list_files(out),
                                manifest['split_fractions'])
  for split in folder.SPLITS:
    want = sorted(r['filename'] for r in rows
                  if split_of[r['patient_id']] == split)
    assert sorted(exported[split]) == want, split
  name = rows[0]['filename']
  with open(os.path.join(out, name), 'rb') as f:
    copied = f.read()
  assert copied == (sample._DATA_DIR / 'images' / name).read_bytes()  # pylint: disable=protected-access


def test_noisy_copy_is_corrupted_once_and_stored_exactly(clean_dir, tmp_path):
  out = tmp_path / 'noisy'
  manifest = noisy_copy.make_copy(clean_dir, str(out), 'gaussian:25', seed=3)
  assert manifest['noise'] == 'gaussian' and manifest['level'] == 25.0
  assert json.loads((out / noisy_copy.MANIFEST).read_text()) == manifest
  names = folder.list_files(clean_dir)
  assert any(name.endswith('.tif') for name in names)
  # Same names (as PNG), so the same patients and splits.
  assert folder.list_files(str(out)) == sorted(png(n) for n in names)
  residuals = []
  for name in names:
    clean, noisy = read(os.path.join(clean_dir, name)), read(out / png(name))
    with Image.open(out / png(name)) as image:
      assert image.mode.startswith('I')  # 16-bit.
    expected = noisy_copy.corrupt_image(clean, noisy_copy.image_key(3, name),
                                        'gaussian', 25.0, 2.0)
    np.testing.assert_allclose(noisy, expected, atol=0.51 / 65535)
    residuals.append(noisy - clean)
  assert np.std(residuals) == pytest.approx(25 / 255, rel=0.05)

  # Once, with a fixed seed: the same files again; another seed differs; an
  # image's noise does not depend on which others are copied.
  again = tmp_path / 'again'
  noisy_copy.make_copy(clean_dir, str(again), 'gaussian:25', seed=3)
  other = tmp_path / 'other'
  noisy_copy.make_copy(clean_dir, str(other), 'gaussian:25', seed=4)
  part = tmp_path / 'part'
  noisy_copy.make_copy(clean_dir, str(part), 'gaussian:25', seed=3,
                       splits=['train'], split_fractions='0.5,0.25,0.25')
  for name in map(png, names):
    assert (again / name).read_bytes() == (out / name).read_bytes()
    assert (other / name).read_bytes() != (out / name).read_bytes()
  first = tmp_path / 'first'
  noisy_copy.make_copy(clean_dir, str(first), 'gaussian:25', seed=3,
                       num_images=2)
  copied = folder.list_files(str(part))
  assert 0 < len(copied) < len(names)
  assert len(folder.list_files(str(first))) == 2
  for name in copied + folder.list_files(str(first)):
    assert ((part if name in copied else first) / name).read_bytes() == (
        out / name).read_bytes()


def test_poisson_gaussian_copy(clean_dir, tmp_path):
  out = tmp_path / 'pg'
  noisy_copy.make_copy(clean_dir, str(out), 'poisson_gaussian:50',
                       read_noise=5.0)
  name = folder.list_files(clean_dir)[0]
  residual = read(out / png(name)) - read(os.path.join(clean_dir, name))
  # Dose 50 at intensity ~0.5: std sqrt(0.5 / 50) ~ 0.1, plus read noise.
  assert residual.std() == pytest.approx(0.1, rel=0.25)


@pytest.mark.parametrize('peak', [1.0, 0.4, 0.1, 0.01, 0.0])
def test_dark_images_read_back_at_their_own_values(peak):
  pixels = np.linspace(0, peak, 64 * 64).reshape(64, 64)
  stored = noisy_copy.to_uint16(pixels)
  back = image_io.to_float01(stored)
  top = 2**image_io.bit_depth(stored) - 1
  np.testing.assert_allclose(back, pixels, atol=0.5 / top + 1e-7)


def test_mistakes_are_refused_in_one_line(clean_dir, tmp_path):
  out = str(tmp_path / 'out')
  noisy_copy.make_copy(clean_dir, out, 'gaussian:10')
  for call, match in [
      (lambda: noisy_copy.make_copy(clean_dir, out, 'gaussian:10'),
       'overwrite'),
      (lambda: noisy_copy.make_copy(clean_dir, clean_dir, 'gaussian:10'),
       'differ'),
      (lambda: noisy_copy.make_copy(clean_dir, out, 'gaussian'), 'level'),
      (lambda: noisy_copy.make_copy(clean_dir, out, 'blur:3'), 'unknown'),
      (lambda: noisy_copy.make_copy(clean_dir, out, 'gaussian:10',
                                    splits=['val'], overwrite=True),
       'splits'),
  ]:
    with pytest.raises(ValueError, match=match) as info:
      call()
    assert '\n' not in str(info.value)
    # The library names the concept; only a command line names its flags.
    assert '--' not in str(info.value), info.value
  noisy_copy.make_copy(clean_dir, out, 'gaussian:10', overwrite=True)


def test_vendor_edge_enhancement_of_correlated_noise():
  # --sharpen unsharp-masks the noise alone: the clean image stays the
  # reference, the texture loses neighbour correlation and gains power.
  import jax  # pylint: disable=g-import-not-at-top
  clean = np.full((256, 256), 0.5, np.float32)
  key = jax.random.key(0)
  plain = noisy_copy.corrupt_image(clean, key, 'correlated_gaussian', 15.0,
                                   0.0, correlation=0.5) - clean
  sharp = noisy_copy.corrupt_image(clean, key, 'correlated_gaussian', 15.0,
                                   0.0, correlation=0.5, sharpen=1.0) - clean
  rho = lambda n: np.mean(n[1:] * n[:-1]) / np.mean(n * n)
  assert rho(plain) == pytest.approx(0.5, abs=0.05)
  assert rho(sharp) < rho(plain) - 0.03
  assert sharp.std() > plain.std() * 1.1


def test_the_correlation_is_part_of_the_noise_spec(clean_dir, tmp_path):
  # correlated_gaussian:15,0.5 (the one spec grammar) is the same noise as
  # correlated_gaussian:15 with the correlation given apart.
  spec = noisy_copy.make_copy(clean_dir, str(tmp_path / 'spec'),
                              'correlated_gaussian:15,0.5', seed=1)
  apart = noisy_copy.make_copy(clean_dir, str(tmp_path / 'apart'),
                               'correlated_gaussian:15', seed=1,
                               correlation=0.5)
  assert spec == apart and spec['correlation'] == 0.5
  for name in folder.list_files(str(tmp_path / 'spec')):
    assert (tmp_path / 'spec' / name).read_bytes() == (
        tmp_path / 'apart' / name).read_bytes()
  with pytest.raises(ValueError, match='correlation'):
    noisy_copy.make_copy(clean_dir, str(tmp_path / 'bad'),
                         'correlated_gaussian:15', correlation=1.5)


def test_command_line(clean_dir, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  run = lambda *args: subprocess.run(
      [sys.executable, '-m', 'xdn.cli.noisy_copy', f'--src={clean_dir}',
       *args], capture_output=True, text=True, timeout=300)
  out = tmp_path / 'out'
  result = run(f'--out={out}', '--noise=correlated_gaussian:15,0.4',
               '--seed=2', '--num_images=2')
  assert result.returncode == 0, result.stderr[-2000:]
  assert '2 images (correlated_gaussian 15)' in result.stdout
  manifest = json.loads((out / noisy_copy.MANIFEST).read_text())
  assert manifest['correlation'] == 0.4 and manifest['seed'] == 2
  # The correlation twice, or a bad spec: one line naming the flag.
  for args, flag in ((['--noise=correlated_gaussian:15,0.4',
                       '--correlation=0.4'], '--correlation'),
                     (['--noise=gaussian'], '--noise')):
    result = run(f'--output={tmp_path / "no"}', *args)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.startswith('error: ') and flag in result.stderr
    assert result.stderr.count('\n') == 1, result.stderr
