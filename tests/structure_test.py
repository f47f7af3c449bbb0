"""The one-way structure: what each package may import (the layer table of
docs/architecture.md), and the light paths.

No library package imports the command lines; the inference path
(`xdn.inference.denoiser`, `xdn-denoise`) never loads TensorFlow, TFDS, clu or the
training code; an installed (not editable) xdn runs its console scripts
from any directory.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from xdn.io import images as image_io

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / 'docs' / 'architecture.md'


def layer_table() -> dict:
  """{package: set of packages it may import}, from docs/architecture.md."""
  table = {}
  for line in ARCHITECTURE.read_text(encoding='utf-8').splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) == 3 and cells[0].startswith('`xdn'):
      table[cells[0].strip('`')] = set(re.findall(r'`(xdn[\w.]*)`', cells[2]))
  return table


LAYERS = layer_table()


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  if parts[0] == 'configs':  # Installed as xdn.configs.
    parts = ('xdn',) + parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _package(module: str) -> str:
  return '.'.join(module.split('.')[:2])


def _xdn_imports(path: pathlib.Path) -> set:
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module.startswith('xdn')):
      found.add(node.module)
      if node.module == 'xdn':
        found.update(f'xdn.{a.name}' for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith('xdn'))
  return found


SOURCES = sorted(p for p in list((ROOT / 'xdn').rglob('*.py')) +
                 list((ROOT / 'configs').glob('*.py'))
                 if '_test' not in p.name and 'dummy_data' not in p.parts)


def test_every_package_has_a_row():
  packages = {_package(_module_name(p)) for p in SOURCES} - {'xdn'}
  assert packages == set(LAYERS), (
      f'docs/architecture.md misses {packages - set(LAYERS)} and lists '
      f'{set(LAYERS) - packages}')


def test_the_table_runs_one_way():
  # Each row may import only rows above it: the table is ordered, so it
  # has no cycle.
  order = list(LAYERS)
  for package, allowed in LAYERS.items():
    assert allowed <= set(order[:order.index(package)]), (
        f'{package} may import {allowed - set(order[:order.index(package)])}'
        ', which are not below it')


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: _module_name(p))
def test_imports_follow_the_layer_table(path):
  package = _package(_module_name(path))
  used = {_package(m) for m in _xdn_imports(path)} - {package, 'xdn'}
  if path.name == '__main__.py':  # `python -m xdn.beam`: a command line.
    used -= {'xdn.cli'}
  assert used <= LAYERS.get(package, set()), (
      f'{_module_name(path)} imports {sorted(used - LAYERS.get(package, set()))}, '
      f'which docs/architecture.md does not allow {package}')


def test_setup_cfg_lists_every_package():
  import configparser  # pylint: disable=g-import-not-at-top
  import setuptools  # pylint: disable=g-import-not-at-top
  setup = configparser.ConfigParser()
  setup.read(ROOT / 'setup.cfg')
  listed = set(setup['options']['packages'].split())
  found = set(setuptools.find_packages(str(ROOT), include=['xdn*'],
                                       exclude=['*dummy_data*']))
  assert listed == found | {'xdn.configs'}, (listed ^ (found | {'xdn.configs'}))
  assert 'xdn.configs = configs' in setup['options']['package_dir']


def test_the_table_can_fail(tmp_path):
  # A library module importing a command line breaks the rule.
  bad = tmp_path / 'bad.py'
  bad.write_text('from xdn.cli import denoise\n')
  used = {_package(m) for m in _xdn_imports(bad)}
  assert not used <= LAYERS['xdn.inference']


# Off the shipped model's denoising path: TensorFlow, plotting, training
# code, and orbax / optax (loaded only for a training workdir's model).
_HEAVY = ('tensorflow', 'tensorflow_datasets', 'clu', 'xdn.training.train',
          'xdn.data.pipeline', 'xdn.losses.fidelity', 'matplotlib',
          'orbax.checkpoint', 'optax', 'xdn.workdir.state',
          'xdn.workdir.checkpoints')


def _loaded_heavy_modules(code: str, cwd: str) -> list:
  probe = (f'import atexit, sys\n'
           f'heavy = {_HEAVY!r}\n'
           'atexit.register(lambda: print("LOADED", sorted(\n'
           '    h for h in heavy if h in sys.modules)))\n' + code)
  out = subprocess.run([sys.executable, '-c', probe], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
  line = [l for l in out.stdout.splitlines() if l.startswith('LOADED')]
  assert line, out.stderr[-2000:]
  return eval(line[-1][len('LOADED '):])  # pylint: disable=eval-used


def test_inference_import_is_light(tmp_path):
  assert _loaded_heavy_modules('import xdn.inference.denoiser', str(tmp_path)) == []


def test_denoise_command_never_loads_tensorflow(tmp_path):
  image = (np.arange(96 * 80).reshape(96, 80) % 251).astype(np.uint8)
  (tmp_path / 'in.png').write_bytes(image_io.encode_png(image))
  code = ('sys.argv = ["xdn-denoise", "--out=out", "in.png"]\n'
          'from xdn.cli import denoise\n'
          'try:\n'
          '  denoise.run()\n'
          'except SystemExit as e:\n'
          '  assert not e.code, e.code\n')
  assert _loaded_heavy_modules(code, str(tmp_path)) == []
  out = image_io.read_grayscale(tmp_path / 'out' / 'in.png')
  assert out.shape == image.shape and out.dtype == image.dtype


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """xdn installed as `pip install .` would (a wheel, not editable)."""
  target = tmp_path_factory.mktemp('site')
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                  '--no-deps', '--no-build-isolation', '--target',
                  str(target), str(ROOT)], check=True, timeout=600,
                 cwd=str(tmp_path_factory.mktemp('build')))
  return target


def _run_installed(installed, tmp_path, script, *args, timeout=600):
  env = dict(os.environ, PYTHONPATH=str(installed))
  env.pop('XLA_FLAGS', None)  # One CPU device, as a user has.
  return subprocess.run([str(installed / 'bin' / script), *args],
                        cwd=str(tmp_path), env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_installed_console_scripts_work_from_any_directory(installed,
                                                           tmp_path):
  # Nothing is read from the checkout: its folders are not on the path.
  image = (np.arange(64 * 72).reshape(64, 72) % 200).astype(np.uint8)
  (tmp_path / 'scans').mkdir()
  (tmp_path / 'scans' / 'a.png').write_bytes(image_io.encode_png(image))
  out = _run_installed(installed, tmp_path, 'xdn-denoise', '--out=den',
                       'scans')
  assert out.returncode == 0, out.stderr[-2000:]
  assert str(installed) in out.stderr  # The installed copy ran.
  assert (tmp_path / 'den' / 'a.png').exists()

  out = _run_installed(installed, tmp_path, 'xdn-evaluate', '--pretrained',
                       '--folder=scans', '--split=all', '--baselines=noisy',
                       '--settings=gaussian:25', '--out=report')
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / 'report' / 'eval_results.md').exists()

  out = _run_installed(installed, tmp_path, 'xdn-bench', '--models=vae',
                       '--batch_size=2', '--repeats=1', '--warmup=0',
                       '--pipeline_steps=1')
  assert out.returncode == 0, out.stderr[-2000:]
  assert '"vae"' in out.stdout

  # configs/ is installed as xdn.configs, never as a top-level package.
  assert not (installed / 'configs').exists()
  assert (installed / 'xdn' / 'configs' / 'unet.py').exists()
  out = _run_installed(installed, tmp_path, 'xdn-train', '--help')
  assert '--workdir' in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: _module_name(p))
def test_only_public_jax_api(path):
  private = set()
  for node in ast.walk(ast.parse(path.read_text())):
    names = ([node.module or ''] if isinstance(node, ast.ImportFrom) else
             [a.name for a in node.names] if isinstance(node, ast.Import)
             else [])
    private.update(n for n in names if n.startswith(('jax._src',
                                                     'jaxlib._')))
  assert not private, f'{_module_name(path)} imports {private}'
