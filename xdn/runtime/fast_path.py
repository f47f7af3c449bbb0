"""Whether this process runs xdn's fast path, and one line saying so if not.

jax >= 0.11 (which needs Python >= 3.12) compiles the U-Net's convolutions
to much faster CPU code: a 2048² radiograph takes 3.6-4.0 s end to end on
Python 3.13 with jax 0.12 against 7.0-7.8 s on Python 3.11, where pip
resolves jax 0.10 (same image, same flags, runs alternated; docs/speed.md).
"""

import sys
from typing import Optional, Tuple

FAST_JAX = (0, 11)


def _version(text: str) -> Tuple[int, ...]:
  parts = []
  for part in text.split('.')[:2]:
    digits = ''.join(c for c in part if c.isdigit())
    parts.append(int(digits or 0))
  return tuple(parts)


def slow_path_note(jax_version: Optional[str] = None,
                   python: Tuple[int, int] = sys.version_info[:2]
                   ) -> Optional[str]:
  """None on the fast path, else one line naming what to change."""
  if jax_version is None:
    import jax  # pylint: disable=g-import-not-at-top
    jax_version = jax.__version__
  if _version(jax_version) >= FAST_JAX:
    return None
  if python < (3, 12):
    fix = (f'Python {python[0]}.{python[1]} gets jax {jax_version}; use '
           'Python >= 3.12 and pip install -U jax')
  else:
    fix = f'jax {jax_version} is old; pip install -U "jax>=0.11"'
  return (f'slow path: {fix} to denoise about 2x faster on CPU '
          '(docs/speed.md)')
