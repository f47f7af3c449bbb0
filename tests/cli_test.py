"""Every console script: --help lists its own flags, the shared flags mean
the same everywhere, and a missing optional extra is one line, exit 2."""

import configparser
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent

# A flag of each command's own (not a shared one), which --help must list.
OWN_FLAG = {
    'xdn-denoise': '--ensemble_max_pixels',
    'xdn-evaluate': '--settings',
    'xdn-noise': '--after',
    'xdn-train': '--workdir',
    'xdn-export': '--target_noise_sigma',
    'xdn-curves': '--tag',
    'xdn-noisy-copy': '--sharpen',
    'xdn-bench': '--mode',
    'xdn-beam': '--skip_existing',
}
# Commands that write files name the folder --output (alias --out).
WRITES = ('xdn-denoise', 'xdn-evaluate', 'xdn-noise', 'xdn-export',
          'xdn-curves', 'xdn-noisy-copy', 'xdn-beam')


def console_scripts() -> dict:
  setup = configparser.ConfigParser()
  setup.read(ROOT / 'setup.cfg')
  lines = setup['options.entry_points']['console_scripts'].strip()
  return dict(tuple(p.strip() for p in line.split('='))
              for line in lines.splitlines())


def _run(args, **kwargs):
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  return subprocess.run(args, capture_output=True, text=True, timeout=300,
                        env=env, **kwargs)


def _beam_installed() -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec('apache_beam') is not None


def test_every_console_script_is_checked():
  assert set(console_scripts()) == set(OWN_FLAG)


@pytest.mark.parametrize('script', sorted(OWN_FLAG))
def test_help_lists_the_commands_own_flags(script, tmp_path):
  if script == 'xdn-beam' and not _beam_installed():
    pytest.skip('the beam extra is not installed (its help is Beam\'s)')
  out = _run([str(BIN / script), '--help'], cwd=str(tmp_path))
  # absl's --help exits 1 after printing; argparse's (xdn-beam) 0.
  assert out.returncode in (0, 1), out.stderr[-2000:]
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]
  text = out.stdout + out.stderr
  assert OWN_FLAG[script] in text, text[-2000:]
  if script in WRITES:
    assert '--output' in text, text[-2000:]


def test_old_flag_names_still_work(tmp_path):
  # --out is --output's alias, --workdir --model's.
  from xdn.io import images  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  image = (np.arange(64 * 72).reshape(64, 72) % 200).astype(np.uint8)
  (tmp_path / 'a.png').write_bytes(images.encode_png(image))
  out = _run([str(BIN / 'xdn-denoise'), '--out=den', '--workdir=pretrained',
              'a.png'], cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / 'den' / 'a.png').exists()
  # On the slow path (jax < 0.11: Python 3.11) it says so, in one line.
  from xdn.runtime import fast_path  # pylint: disable=g-import-not-at-top
  assert ('slow path:' in out.stderr) == (
      fast_path.slow_path_note() is not None), out.stderr[-2000:]


_BLOCK = '''
import sys
class Block:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] == {module!r}:
      raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = {argv!r}
'''


def _without(module: str, argv, code: str, cwd):
  return _run([sys.executable, '-c',
               _BLOCK.format(module=module, argv=argv) + code], cwd=str(cwd))


def test_beam_without_its_extra_is_one_line(tmp_path):
  out = _without('apache_beam', ['xdn-beam', '--input=in', '--output=out'],
                 'from xdn.cli import beam\nbeam.run(sys.argv[1:])', tmp_path)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and 'pip install "xdn[beam]"' in lines[0], lines


def test_bench_beam_without_its_extra_is_one_line(tmp_path):
  out = _without('apache_beam', ['xdn-bench', '--mode=beam'],
                 'from xdn.cli import bench\nbench.run()', tmp_path)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  assert 'pip install "xdn[beam]"' in out.stderr.strip().splitlines()[-1]


def test_user_errors_are_one_line_exit_1(tmp_path):
  out = _run([str(BIN / 'xdn-denoise'), '--output=o', '--noise=gaussian:x',
              'missing.png'], cwd=str(tmp_path))
  assert out.returncode == 1, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith('error: ')


def test_xdn_train_finds_the_installed_configs(tmp_path, monkeypatch):
  from xdn.cli import train  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)  # No configs/ folder here.
  found = train.installed_config('configs/unet.py:quick')
  assert found and found.endswith(os.path.join('unet.py') + ':quick')
  assert os.path.isfile(found.partition(':')[0])
  assert train.installed_config('configs/nothing.py') is None
  (tmp_path / 'mine.py').write_text('')
  assert train.installed_config('mine.py') is None  # A file that exists.
  assert train.resolve_config_argument(['--config=vae.py'])[0].startswith(
      '--config=' + os.path.dirname(found.partition(':')[0]))


def test_the_slow_path_is_named():
  from xdn.runtime import fast_path  # pylint: disable=g-import-not-at-top
  assert fast_path.slow_path_note('0.12.1', (3, 13)) is None
  assert fast_path.slow_path_note('0.11.0', (3, 12)) is None
  note = fast_path.slow_path_note('0.10.2', (3, 11))
  assert 'Python >= 3.12' in note and '0.10.2' in note
  assert 'jax>=0.11' in fast_path.slow_path_note('0.10.2', (3, 12))
