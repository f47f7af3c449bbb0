"""The persistent compilation cache: a second run compiles nothing, and a
cache folder that cannot be written is a warning, never a failure."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from xdn.io import images as image_io
from xdn.runtime import compile_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Denoises one image in a fresh process, counting JAX's own cache events.
_PROBE = '''
import collections, json, sys
import jax
events = collections.Counter()
jax.monitoring.register_event_listener(
    lambda name, **kw: events.update([name]))
sys.argv = ['xdn-denoise', '--out=' + sys.argv[2], '--overwrite',
            sys.argv[1]]
from xdn.cli import denoise
try:
  denoise.run()
except SystemExit as e:
  assert not e.code, e.code
print('EVENTS', json.dumps({k: v for k, v in events.items()
                            if 'compilation_cache' in k}))
'''


def _denoise_counting(tmp_path, cache):
  env = dict(os.environ, XDN_COMPILE_CACHE=str(cache))
  out = subprocess.run([sys.executable, '-c', _PROBE,
                        str(tmp_path / 'in.png'), str(tmp_path / 'out')],
                       cwd=str(tmp_path), env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  line = [l for l in out.stdout.splitlines() if l.startswith('EVENTS')][-1]
  return json.loads(line[len('EVENTS '):]), out.stderr


@pytest.fixture
def image(tmp_path):
  rng = np.random.default_rng(0)
  pixels = np.clip(128 + rng.normal(0, 20, (96, 80)), 0, 255).astype(np.uint8)
  (tmp_path / 'in.png').write_bytes(image_io.encode_png(pixels))


def test_second_run_compiles_nothing(tmp_path, image):
  cache = tmp_path / 'cache'
  first, _ = _denoise_counting(tmp_path, cache)
  assert first.get('/jax/compilation_cache/cache_misses', 0) > 0, first
  second, _ = _denoise_counting(tmp_path, cache)
  assert second.get('/jax/compilation_cache/cache_hits', 0) > 0, second
  assert second.get('/jax/compilation_cache/cache_misses', 0) == 0, second


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0,
                    reason='root writes into read-only folders')
def test_read_only_cache_is_a_warning(tmp_path, image):
  cache = tmp_path / 'ro'
  cache.mkdir()
  cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
  try:
    events, stderr = _denoise_counting(tmp_path, cache)
  finally:
    cache.chmod(stat.S_IRWXU)
  assert 'Compilation cache off' in stderr
  assert (tmp_path / 'out' / 'in.png').exists()


def test_a_file_in_the_way_is_a_warning(tmp_path, image):
  blocker = tmp_path / 'file'
  blocker.write_text('not a folder')
  events, stderr = _denoise_counting(tmp_path, blocker / 'cache')
  assert 'Compilation cache off' in stderr
  assert not events.get('/jax/compilation_cache/cache_hits')
  assert (tmp_path / 'out' / 'in.png').exists()


def test_settings(monkeypatch, tmp_path):
  monkeypatch.setenv(compile_cache.ENV, 'off')
  assert compile_cache.folder() is None and compile_cache.enable() is None
  monkeypatch.setenv(compile_cache.ENV, '')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert compile_cache.folder() == str(tmp_path / 'xdn' / 'jax')


def test_first_file_compiles_while_its_noise_is_estimated(tmp_path, image):
  # xdn-denoise compiles a new size's program on its compile thread while
  # the reader thread estimates the file's noise (Denoiser.precompile), so
  # the largest compilation of a run is not on the main thread.
  probe = _PROBE.replace(
      "print('EVENTS'",
      "print('COMPILED', json.dumps(compiled))\nprint('EVENTS'").replace(
      'events = collections.Counter()\n', """events = collections.Counter()
import threading
compiled = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiled.append(
        (threading.current_thread().name, secs))
    if name.endswith('backend_compile_duration') else None)
""")
  out = subprocess.run([sys.executable, '-c', probe, str(tmp_path / 'in.png'),
                        str(tmp_path / 'out')], cwd=str(tmp_path),
                       env=dict(os.environ,
                                XDN_COMPILE_CACHE=str(tmp_path / 'cache')),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  line = [l for l in out.stdout.splitlines() if l.startswith('COMPILED')][-1]
  compiled = json.loads(line[len('COMPILED '):])
  thread, _ = max(compiled, key=lambda c: c[1])
  assert thread.startswith('xdn-compile'), compiled
