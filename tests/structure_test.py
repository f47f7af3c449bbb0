"""The one-way structure: what each layer may import, and the light paths.

Library modules never import a command-line module; the inference path
(`xdn.inference.denoiser`, `xdn-denoise`) never loads TensorFlow, TFDS, clu or the
training code; an installed (not editable) xdn runs its console scripts
from any directory.
"""

import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from xdn.io import images as image_io

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMAND_LINES = {'xdn.cli.denoise', 'xdn.cli.evaluate', 'xdn.cli.export', 'xdn.bench',
                 'xdn.cli.curves',
                 'xdn.bench.__main__', 'xdn.data.noisy_copy',
                 'xdn.beam.pipeline', 'xdn.beam.__main__'}
# The bottom layer: pure functions and I/O, importing no other xdn layer.
BOTTOM = {'xdn.noise.synthetic', 'xdn.metrics.similarity', 'xdn.io.images', 'xdn.io.radiographs',
          'xdn.noise.estimation', 'xdn.errors', 'xdn.runtime.batching',
          'xdn.noise.physics', 'xdn.metrics.lesions', 'xdn.metrics.observers',
          'xdn.noise.report', 'xdn.runtime.xla_flags', 'xdn.inference.strength',
          'xdn.metrics.image_quality', 'xdn.io.dicom_derived', 'xdn.inference.size_buckets'}
ALLOWED_IN_BOTTOM = BOTTOM | {'xdn.models'}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _xdn_imports(path: pathlib.Path) -> set:
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module.startswith('xdn')):
      found.add(node.module)
      found.update(f'{node.module}.{a.name}' for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith('xdn'))
  return found


def _is_command_line(module: str) -> bool:
  # xdn.bench is the benchmark tool's package: all of it is on top.
  return module in COMMAND_LINES or module.startswith('xdn.bench')


LIBRARY = sorted(p for p in (ROOT / 'xdn').rglob('*.py')
                 if not _is_command_line(_module_name(p))
                 and '_test' not in p.name and 'dummy_data' not in p.parts)


@pytest.mark.parametrize('path', LIBRARY, ids=lambda p: _module_name(p))
def test_library_modules_import_no_command_line(path):
  bad = _xdn_imports(path) & COMMAND_LINES
  assert not bad, f'{_module_name(path)} imports command lines {bad}'


@pytest.mark.parametrize('module', sorted(BOTTOM))
def test_bottom_layer_imports_only_the_bottom(module):
  path = ROOT / (module.replace('.', '/') + '.py')
  imported = {m for m in _xdn_imports(path)
              if m.count('.') <= 1 and m != 'xdn'}
  assert imported <= ALLOWED_IN_BOTTOM, imported - ALLOWED_IN_BOTTOM


# Off the shipped model's denoising path: TensorFlow, plotting, training
# code, and orbax / optax (loaded only for a training workdir's model).
_HEAVY = ('tensorflow', 'tensorflow_datasets', 'clu', 'xdn.training.train',
          'xdn.data.pipeline', 'xdn.losses.fidelity', 'matplotlib',
          'orbax.checkpoint', 'optax', 'xdn.workdir.state', 'xdn.workdir.checkpoints')


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
          'from xdn import denoise\n'
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


@pytest.mark.parametrize('path', LIBRARY + sorted(
    p for p in (ROOT / 'xdn').rglob('*.py') if _is_command_line(
        _module_name(p))), ids=lambda p: _module_name(p))
def test_only_public_jax_api(path):
  private = set()
  for node in ast.walk(ast.parse(path.read_text())):
    names = ([node.module or ''] if isinstance(node, ast.ImportFrom) else
             [a.name for a in node.names] if isinstance(node, ast.Import)
             else [])
    private.update(n for n in names if n.startswith(('jax._src',
                                                     'jaxlib._')))
  assert not private, f'{_module_name(path)} imports {private}'
