"""Test set-up: four CPU devices for pmap tests, and the repo on sys.path.

XLA_FLAGS must be set before jax is first imported, which is why it is here.
"""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One compilation cache for the session and the processes it starts (the
# CLI tests compile the same programs again and again), never the user's.
import tempfile  # pylint: disable=g-import-not-at-top
os.environ['XDN_COMPILE_CACHE'] = tempfile.mkdtemp(prefix='xdn-test-cache-')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from xdn.runtime import xla_flags  # pylint: disable=g-import-not-at-top

# As run.py does (subprocesses inherit it), but without oneDNN: the suite
# compares one device against four, and oneDNN rounds per batch size.
xla_flags.configure_xla_cpu(onednn=False)
# And no later call (the loaders configure too) may add oneDNN in-process;
# tests of the flag choice itself run fresh processes without this.
os.environ['XDN_KEEP_XLA_FLAGS'] = '1'


import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='session')
def sample_data_dir(tmp_path_factory):
  """A TFDS data_dir holding the embedded chest_xray_sample, built once."""
  from xdn.configs import default  # pylint: disable=g-import-not-at-top
  from xdn.data import pipeline  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  config = default.get_config()
  config.data.data_dir = data_dir
  pipeline.prepare(config.data)
  return data_dir
