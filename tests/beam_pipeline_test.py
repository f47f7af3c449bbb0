"""xdn-beam end to end on the DirectRunner (needs the beam extra).

The main run uses `--direct_running_mode=multi_processing
--direct_num_workers=2`: the model, the files and the settings reach
worker processes only through Beam (tests/beam_cluster_test.py runs the
same pipeline on a Dask cluster and on Beam's portable runner). Its outputs
must be `xdn-denoise`'s byte for byte; a corrupt file and two inputs with
one output name end in the dead-letter file with their reasons; a run
killed with SIGKILL and rerun with --skip_existing leaves exactly one
complete output per input.
"""

import csv
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest

pytest.importorskip('apache_beam')
# pylint: disable=g-import-not-at-top,wrong-import-position
import apache_beam as beam
from apache_beam.options import pipeline_options
from tests import beam_fixtures as bf
from xdn.beam import pipeline
from xdn import errors
from xdn.io import images as image_io

ROOT = bf.ROOT
MULTI = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']
_noisy, _run, _outputs = bf.noisy, bf.run, bf.outputs


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
  return bf.make_archive(tmp_path_factory.mktemp('archive'))


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


def test_tables_keep_one_line_per_input_and_runs_check_their_inputs(
    tmp_path):
  """A step run twice (a retried bundle, a lost worker's tasks) gives an
  input two lines: one is kept. An input no table names is reported."""
  row = lambda path, status: pipeline.result_row(path, f'out/{path}', status)
  text = pipeline._table_text(pipeline.ROW, [  # pylint: disable=protected-access
      row('b.png', 'unchanged'), None, row('a.png', 'written'),
      row('b.png', 'written'), row('a.png', 'written')])
  lines = text.splitlines()
  assert lines[0] == ','.join(pipeline.RESULT_COLUMNS)
  assert [l.split(',')[:3] for l in lines[1:]] == [
      ['a.png', 'out/a.png', 'written'], ['b.png', 'out/b.png', 'written']]
  failed = pipeline._table_text(pipeline.FAILED_KIND, [  # pylint: disable=protected-access
      'c.png\twhy', 'c.png\twhy', None])
  assert failed == 'c.png\twhy\n'
  folder = tmp_path / 'in'
  folder.mkdir()
  for name in ('a.png', 'b.png', 'c.png', 'd.png'):
    (folder / name).write_bytes(b'x')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'xdn_results.csv').write_text(pipeline._table_text(  # pylint: disable=protected-access
      pipeline.ROW, [row(str(folder / 'a.png'), 'written'),
                     row(str(folder / 'b.png'), 'skipped')]))
  (out / 'xdn_failed.txt').write_text(f'{folder / "c.png"}\twhy\n')
  rows, failed = pipeline.read_tables(str(out))
  assert failed == [str(folder / 'c.png')]
  assert pipeline.count(rows, failed) == {
      'written': 1, 'unchanged': 0, 'skipped': 1, 'failures': 1}
  assert pipeline.unaccounted(rows, failed, f'{folder}/*.png',
                              lambda p: True) == [str(folder / 'd.png')]


def test_dask_runner_by_its_short_name_or_one_line_naming_the_extra(
    monkeypatch):
  full = pipeline.DASK_RUNNER
  assert pipeline.runner_arguments(['--runner=DaskRunner', '--x=1']) == [
      f'--runner={full}', '--x=1']
  assert pipeline.runner_arguments(['--runner', 'dask']) == ['--runner', full]
  assert pipeline.runner_arguments(['--runner=DirectRunner']) == [
      '--runner=DirectRunner']
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def without_distributed(name, *args, **kwargs):
    if name.split('.')[0] == 'distributed':
      raise ModuleNotFoundError(f"No module named '{name}'", name=name)
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', without_distributed)
  monkeypatch.delitem(sys.modules, 'distributed', raising=False)
  with pytest.raises(errors.MissingExtra, match=r'xdn\[dask\]') as e:
    pipeline.runner_arguments(['--runner=DaskRunner'])
  assert '\n' not in str(e.value)


def test_names_checked_in_the_launcher_as_in_the_pipeline(tmp_path):
  """The DaskRunner's inputs are checked before the run: the same records
  as the pipeline's own grouping gives."""
  settings = pipeline.Settings(str(tmp_path / 'out'), '/in')
  records = pipeline.check_names(
      ['/in/a.png', '/in/b.png', '/in/b.tif', '/in/c.dcm'], settings)
  assert [r for r in records if r[0] == pipeline.PATH] == [
      (pipeline.PATH, '/in/a.png'), (pipeline.PATH, '/in/c.dcm')]
  failed = dict(r[1] for r in records if r[0] == pipeline.FAILED_KIND)
  assert sorted(failed) == ['/in/b.png', '/in/b.tif']
  assert 'would be written for 2 inputs' in failed['/in/b.tif']


def test_dask_inputs_one_partition_per_file(archive, tmp_path):
  """The DaskRunner reads the options of the pipeline (beam.Pipeline keeps
  a deep copy of those it is given): one partition per file, so that every
  worker gets images, unless the user chose."""
  pytest.importorskip('distributed')
  from apache_beam.runners.dask import dask_runner  # pylint: disable=g-import-not-at-top

  def partitions(*extra):
    options = pipeline_options.PipelineOptions(pipeline.runner_arguments(
        ['--runner=DaskRunner', f'--input={archive}',
         f'--output={tmp_path / "out"}', *extra]))
    p = beam.Pipeline(options=options)
    pipeline.build(p, options.view_as(pipeline.XdnOptions))
    dask = p.options.view_as(dask_runner.DaskOptions)
    return dask.partition_size, dask.npartitions

  assert partitions() == (1, None)
  assert partitions('--dask_npartitions=2') == (None, 2)
