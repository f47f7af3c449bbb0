"""JAX's persistent compilation cache, on by default for xdn's commands.

Compiling the U-Net for one image size takes about a second per program on
a CPU, and every `xdn-denoise` process used to pay it again. JAX can keep
compiled programs on disk (`jax_compilation_cache_dir`); xdn turns that on
in the user's cache folder for every entry point and the library loaders,
with thresholds at zero so that CPU programs (quick to compile, but many)
are kept too. A second run of the same sizes then compiles nothing.

  XDN_COMPILE_CACHE unset  ~/.cache/xdn/jax (or $XDG_CACHE_HOME/xdn/jax)
  XDN_COMPILE_CACHE=DIR    that folder
  XDN_COMPILE_CACHE=0      off (also 'off', 'false', 'no')

Two processes may share the folder: JAX writes each entry to a temporary
file and renames it. A multi-process run (run.py with
`config.distributed`) keeps no cache at all (`disable`): on jaxlib 0.12 its
processes hung in their first collective when they found their programs
in a cache filled by an earlier run (tests/multihost_test.py). The cache
is never a cause of failure: a folder that cannot be made or written is a
warning and the run goes on uncached, and JAX itself treats an unreadable
entry as a miss.
"""

import os
import tempfile
from typing import Optional

from absl import logging

ENV = 'XDN_COMPILE_CACHE'
_OFF = ('0', 'off', 'false', 'no')
_enabled: Optional[str] = None  # The folder in use, once enabled.


def default_folder() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'xdn', 'jax')


def folder() -> Optional[str]:
  """The folder the settings ask for, or None when the cache is off."""
  setting = os.environ.get(ENV, '').strip()
  if setting.lower() in _OFF:
    return None
  return os.path.abspath(os.path.expanduser(setting or default_folder()))


def _writable(path: str) -> Optional[str]:
  """None if `path` is a folder this process can write to, else why not."""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix='.xdn-probe-'):
      pass
  except OSError as e:
    return e.strerror or str(e)
  return None


def active() -> Optional[str]:
  """The folder compiled programs are kept in, or None (not enabled)."""
  return _enabled


def disable(reason: str) -> None:
  """Turns JAX's persistent cache off for this process, whoever set it
  (xdn or JAX_COMPILATION_CACHE_DIR); `reason` is logged."""
  global _enabled
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_compilation_cache', False)
  _enabled = None
  logging.info('Compilation cache off: %s', reason)


def enable() -> Optional[str]:
  """Turns the cache on as the settings say; returns its folder or None.

  Idempotent. Call it before the first compilation (programs compiled
  before are simply not cached).
  """
  global _enabled
  path = folder()
  if path is None or path == _enabled:
    return path
  problem = _writable(path)
  if problem:
    logging.warning('Compilation cache off: cannot write to %s (%s); set %s '
                    'to a writable folder, or %s=0 to silence this', path,
                    problem, ENV, ENV)
    return None
  import jax  # pylint: disable=g-import-not-at-top
  try:
    jax.config.update('jax_compilation_cache_dir', path)
    # Keep every program: CPU compilations are short but add up per size.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  except (AttributeError, ValueError) as e:  # An older JAX without them.
    logging.warning('Compilation cache off: %s', e)
    return None
  _enabled = path
  logging.debug('Compilation cache in %s', path)
  return path
