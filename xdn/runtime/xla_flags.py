"""Process-level XLA:CPU settings, chosen by jaxlib version and CPU.

XLA reads XLA_FLAGS once, when its backend starts, and aborts the process
on a flag it does not know. So `configure_xla_cpu()` runs before the first
JAX computation (the entry points `run.py`, `xdn-denoise`, `xdn-evaluate`,
`xdn-bench`, and `xdn.inference.denoiser`'s loaders call it), adds only flags that
the installed jaxlib is known to have *and* whose name is in its binary,
never a flag the user already set (their XLA_FLAGS wins), and logs what it
chose. XDN_KEEP_XLA_FLAGS=1 turns it off.

What it chooses (measured with `xdn-bench` on a 2-core AMD Zen 5):
  jaxlib 0.10   YNNPACK off for convolutions: it ran these models' float32
                convolutions 3-8x slower than XLA's Eigen path.
  jaxlib >= 0.12
                YNNPACK off for convolutions, and for inference every
                convolution on oneDNN (custom call): the U-Net forward pass
                at 0.70x the time, outputs equal to 3e-7. Not for training
                (`training=True`: run.py, xdn-bench's train steps): on a
                4th-generation Xeon the oneDNN custom call ran the train
                steps at 0.85x the images/s (U-Net quick 86 against 100,
                VAE 329 against 394), while XLA's own convolutions with
                YNNPACK off matched jaxlib 0.10. (`--xla_cpu_use_onednn=true`,
                the older route, makes bfloat16 56x slower and is never set.)
`cpu_features()` reads the CPU's flags; `native_bfloat16()` says whether
bfloat16 arithmetic is native (AVX512_BF16 or AMX), which
`xdn.inference.denoiser`'s precision='auto' needs.
"""

import functools
import importlib.metadata
import mmap
import os
import platform
from typing import FrozenSet, List, Tuple

from absl import logging

_YNN_OFF = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
_ONEDNN = '--xla_cpu_experimental_onednn_custom_call=true'


def _version_tuple(version: str) -> Tuple[int, ...]:
  parts = []
  for part in version.split('.')[:3]:
    digits = ''.join(c for c in part if c.isdigit())
    parts.append(int(digits) if digits else 0)
  return tuple(parts)


def choose(jaxlib_version: str, machine: str = 'x86_64') -> List[str]:
  """The flags worth setting for a jaxlib version on a CPU architecture."""
  version = _version_tuple(jaxlib_version)
  if version[:2] == (0, 10):
    return [_YNN_OFF]
  if version >= (0, 12) and machine in ('x86_64', 'AMD64'):
    return [_ONEDNN, _YNN_OFF]
  return []


def flag_name(flag: str) -> str:
  """'--xla_foo=bar' -> 'xla_foo'."""
  return flag.lstrip('-').split('=', 1)[0]


@functools.lru_cache(maxsize=None)
def _xla_binary() -> str:
  """The jaxlib shared library that holds XLA's flag table, or ''."""
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ''
  folder = os.path.dirname(jaxlib.__file__)
  candidates = []
  for root, _, files in os.walk(folder):
    for name in files:
      if '.so' in name or name.endswith('.pyd'):
        path = os.path.join(root, name)
        candidates.append((os.path.getsize(path), path))
  # XLA is the largest library jaxlib ships (libjax_common, xla_extension).
  return max(candidates)[1] if candidates else ''


@functools.lru_cache(maxsize=None)
def known_to_jaxlib(name: str) -> bool:
  """Whether the installed jaxlib's binary holds the flag name `name`."""
  path = _xla_binary()
  if not path:
    return False
  try:
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0,
                                          access=mmap.ACCESS_READ) as m:
      return m.find(name.encode()) >= 0
  except (OSError, ValueError):
    return False


@functools.lru_cache(maxsize=None)
def cpu_features() -> FrozenSet[str]:
  """The CPU's feature flags (Linux /proc/cpuinfo), lower case; or empty."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.split(':', 1)[1].split())
  except OSError:
    pass
  return frozenset()


def native_bfloat16() -> bool:
  """Whether this CPU computes in bfloat16 natively (AVX512_BF16, AMX)."""
  return bool(cpu_features() & {'avx512_bf16', 'amx_bf16'})



def configure_xla_cpu(onednn: bool = True, training: bool = False
                      ) -> List[str]:
  """Adds the chosen flags to XLA_FLAGS (see the module docstring).

  `onednn=False` leaves out the oneDNN custom call (the test suite: its
  kernels round differently per batch size, and the suite compares one
  device against four to 2e-4); so does `training=True` (a process that
  trains: it slows the train step, see the module docstring).

  Returns the flags added (none when the user set them, when
  XDN_KEEP_XLA_FLAGS=1, or when the jaxlib lacks them). XLA reads
  XLA_FLAGS once, when JAX starts its first backend, so the entry points
  and loaders call this before their first JAX computation; called after
  one, the flags only reach processes started from this one (JAX's public
  API cannot tell whether a backend has started without starting one).
  """
  if os.environ.get('XDN_KEEP_XLA_FLAGS') == '1':
    return []
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return []
  current = os.environ.get('XLA_FLAGS', '')
  added = [f for f in choose(version, platform.machine())
           if flag_name(f) not in current and known_to_jaxlib(flag_name(f))
           and ((onednn and not training) or f != _ONEDNN)]
  if added:
    os.environ['XLA_FLAGS'] = ' '.join([current] + added).strip()
    logging.info('XLA_FLAGS=%s (chosen for jaxlib %s on %s)',
                 os.environ['XLA_FLAGS'], version, platform.machine())
  return added
