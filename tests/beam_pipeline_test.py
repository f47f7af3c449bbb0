"""xdn-beam end to end on the DirectRunner (needs the beam extra).

The main run uses `--direct_running_mode=multi_processing
--direct_num_workers=2`: the model, the files and the settings reach
worker processes only through Beam, as on a cluster (the portable Prism
runner would download its Go binary, which a test cannot). Its outputs
must be `xdn-denoise`'s byte for byte; a corrupt file and two inputs with
one output name end in the dead-letter file with their reasons; a run
killed with SIGKILL and rerun with --skip_existing leaves exactly one
complete output per input.
"""

import csv
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
from pydicom import uid
import pytest

pytest.importorskip('apache_beam')
# pylint: disable=g-import-not-at-top,wrong-import-position
from tests import dicom_fixtures as df
from xdn.beam import pipeline
from xdn import errors
from xdn.inference import outputs
from xdn.io import atomic
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io

ROOT = pathlib.Path(__file__).resolve().parents[1]
MULTI = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']
SIDE_FILES = ('xdn_results.csv', 'xdn_failed.txt')


def _noisy(h: int, w: int, top: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  clean = 0.25 + 0.5 * (xx + yy) / (h + w)
  noisy = np.clip(clean + rng.normal(0, 0.05, (h, w)), 0, 1)
  return np.round(noisy * top)


def _run(args, cwd, timeout=300, **kwargs):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, *args], cwd=str(cwd), env=env,
                        capture_output=True, text=True, timeout=timeout,
                        **kwargs)


def _outputs(folder: pathlib.Path) -> dict:
  """Relative name -> bytes of every output (not side files, not temps)."""
  found = {}
  for path in folder.rglob('*'):
    name = str(path.relative_to(folder))
    if path.is_file() and name not in SIDE_FILES and not (
        atomic.is_temporary(name)):
      found[name] = path.read_bytes()
  return found


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
  """A small archive: PNG 8/16 bit, DICOM, a subfolder, a corrupt file and
  two inputs that would share one output name."""
  folder = tmp_path_factory.mktemp('archive')
  (folder / 'sub').mkdir()
  (folder / 'a.png').write_bytes(image_io.encode_png(
      _noisy(64, 80, 255, 0).astype(np.uint8)))
  (folder / 'sub' / 'b.png').write_bytes(image_io.encode_png(
      _noisy(72, 64, 65535, 1).astype(np.uint16)))
  ds = df.dataset(_noisy(64, 72, 4095, 2).astype(np.uint16), bits=12)
  (folder / 'sub' / 'c.dcm').write_bytes(
      df.encode(ds, uid.ExplicitVRLittleEndian))
  (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
  (folder / 'twin.png').write_bytes(image_io.encode_png(
      _noisy(64, 64, 255, 3).astype(np.uint8)))
  (folder / 'twin.tif').write_bytes(image_io.encode_png(
      _noisy(64, 64, 255, 4).astype(np.uint8)))
  return folder


@pytest.fixture(scope='module')
def beam_run(archive, tmp_path_factory):
  out = tmp_path_factory.mktemp('beam') / 'out'
  result = _run(['-m', 'xdn.beam', f'--input={archive}', f'--output={out}',
                 '--precision=float32', *MULTI], archive.parent)
  return result, out


def test_outputs_equal_xdn_denoise(archive, beam_run, tmp_path):
  result, out = beam_run
  assert result.returncode == 1, result.stderr[-3000:]  # Some inputs failed.
  cli = _run(['-m', 'xdn.cli.denoise', f'--out={tmp_path / "cli"}',
              '--precision=float32', str(archive)], tmp_path)
  assert cli.returncode == 1, cli.stderr[-3000:]  # broken.png.
  beam_files, cli_files = _outputs(out), _outputs(tmp_path / 'cli')
  assert sorted(beam_files) == ['a.png', 'sub/b.png', 'sub/c.dcm']
  for name, data in beam_files.items():
    assert data == cli_files[name], name  # Pixels and DICOM header.
  # Two worker processes each loaded the model (handler.load_model logs).
  assert len(set(re.findall(r'\(pid (\d+)\)', result.stderr))) == 2
  derived = pydicom.dcmread(out / 'sub' / 'c.dcm')
  assert derived.ImageType[0] == 'DERIVED'
  assert 'noise told: estimated from each image' in (
      derived.DerivationDescription)


def test_dead_letters_name_each_failed_input_and_why(archive, beam_run):
  _, out = beam_run
  lines = (out / 'xdn_failed.txt').read_text().splitlines()
  reasons = dict(line.split('\t', 1) for line in lines)
  assert sorted(reasons) == sorted(str(archive / n) for n in (
      'broken.png', 'twin.png', 'twin.tif'))
  assert 'cannot decode' in reasons[str(archive / 'broken.png')]
  assert 'would be written for 2 inputs' in reasons[str(archive /
                                                        'twin.png')]


def test_results_table(archive, beam_run):
  _, out = beam_run
  with open(out / 'xdn_results.csv', newline='') as f:
    rows = {r['input']: r for r in csv.DictReader(f)}
  assert list(rows[str(archive / 'a.png')]) == list(pipeline.RESULT_COLUMNS)
  row = rows[str(archive / 'sub' / 'c.dcm')]
  assert row['output'] == str(out / 'sub' / 'c.dcm')
  assert row['status'] == 'written'
  assert (row['height'], row['width']) == ('64', '72')
  assert float(row['noise_sigma']) > 0 and 'Gaussian' in row['noise']
  assert float(row['seconds']) > 0
  assert len(rows) == 3
  pandas = pytest.importorskip('pandas')
  table = pandas.read_csv(out / 'xdn_results.csv')
  assert len(table) == 3 and table['height'].dtype.kind == 'i'


def test_killed_run_then_rerun_leaves_one_complete_output_each(tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  count = 10
  for i in range(count):
    (folder / f'{i:02d}.png').write_bytes(image_io.encode_png(
        _noisy(256, 256, 255, i).astype(np.uint8)))
  out = tmp_path / 'out'
  args = ['-m', 'xdn.beam', f'--input={folder}/*.png', f'--output={out}',
          '--precision=float32', '--skip_existing']
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  process = subprocess.Popen([sys.executable, *args], cwd=str(tmp_path),
                             env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             start_new_session=True)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and not (
        _outputs(out) if out.exists() else {}):
      time.sleep(0.02)
    done_before = len(_outputs(out)) if out.exists() else 0
    os.killpg(process.pid, signal.SIGKILL)  # The whole run, workers too.
  finally:
    process.wait(timeout=60)
  assert 0 < done_before < count, f'{done_before} written before the kill'
  rerun = _run(args, tmp_path)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  written = _outputs(out)
  assert sorted(written) == [f'{i:02d}.png' for i in range(count)]
  for name in written:  # Each one whole: it decodes to the input's shape.
    assert image_io.read_grayscale(out / name).shape == (256, 256)
  with open(out / 'xdn_results.csv', newline='') as f:
    statuses = [r['status'] for r in csv.DictReader(f)]
  assert len(statuses) == count
  assert statuses.count('skipped') >= 1 and statuses.count('written') >= 1
  assert (out / 'xdn_failed.txt').read_text() == ''


def test_a_retried_write_of_identical_bytes_is_accepted(tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  (folder / 'x.png').write_bytes(image_io.encode_png(
      _noisy(64, 64, 255, 5).astype(np.uint8)))
  args = ['-m', 'xdn.beam', f'--input={folder}', f'--output={tmp_path}/out',
          '--precision=float32']
  assert _run(args, tmp_path).returncode == 0
  again = _run(args, tmp_path)  # No flag: same bytes, so it is accepted.
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'unchanged' in (tmp_path / 'out' / 'xdn_results.csv').read_text()
  # Other contents are another user's file: refused, kept.
  (tmp_path / 'out' / 'x.png').write_bytes(b'mine')
  refused = _run(args, tmp_path)
  assert refused.returncode == 1
  assert (tmp_path / 'out' / 'x.png').read_bytes() == b'mine'
  assert '--overwrite' in (tmp_path / 'out' / 'xdn_failed.txt').read_text()


@pytest.mark.parametrize('args,message', [
    ([], '--input is required'),
    (['--input={in}/*.nothing', '--output={tmp}/o'], 'matches no files'),
    (['--input={in}', '--output={in}/den'], 'inside the input folder'),
    (['--input={in}', '--output={tmp}/o', '--noise=loud'], "--noise: noise 'loud'"),
    (['--input={in}', '--output={tmp}/o', '--model={tmp}/none'],
     'no folder'),
    (['--input={in}', '--output={tmp}/o', '--skip_existing', '--overwrite'],
     'pass one'),
])
def test_bad_options_fail_in_one_line(tmp_path, args, message):
  folder = tmp_path / 'in'
  folder.mkdir()
  (folder / 'x.png').write_bytes(image_io.encode_png(
      np.zeros((8, 8), np.uint8)))
  args = [a.format(**{'in': folder, 'tmp': tmp_path}) for a in args]
  with pytest.raises(errors.UserError, match=message) as e:
    pipeline.main(args)
  assert '\n' not in str(e.value)
