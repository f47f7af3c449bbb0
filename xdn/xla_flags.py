"""Process-level XLA settings, applied by the command-line entry points.

Library modules never change the environment by themselves; `run.py`,
`xdn.bench` and the tests call `configure_xla_cpu()` explicitly, before the
first JAX computation (XLA reads its flags when the backend starts).
"""

import importlib.metadata
import os

from absl import logging

# jaxlib 0.10 hands every float32 convolution on CPU to YNNPACK, which runs
# the convolutions of these models 3-8x slower than XLA's Eigen path
# (measured with xdn.bench; newer XLA no longer does so for float32). The
# flag is unknown to other jaxlib versions, and XLA aborts on unknown flags,
# so it is only added where it is known to exist.
_YNN_OFF = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
_VERSIONS_WITH_YNN = ('0.10.',)


def configure_xla_cpu() -> None:
  """Keeps XLA:CPU convolutions on the fast path (see above), unless the
  user already set that flag in XLA_FLAGS or XDN_KEEP_XLA_FLAGS=1."""
  flags = os.environ.get('XLA_FLAGS', '')
  if ('xla_cpu_experimental_ynn_fusion_type' in flags
      or os.environ.get('XDN_KEEP_XLA_FLAGS') == '1'):
    return
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  if version.startswith(_VERSIONS_WITH_YNN):
    os.environ['XLA_FLAGS'] = f'{flags} {_YNN_OFF}'.strip()
    logging.info('XLA_FLAGS=%s (fast CPU convolutions for jaxlib %s)',
                 os.environ['XLA_FLAGS'], version)
