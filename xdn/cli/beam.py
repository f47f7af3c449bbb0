"""`xdn-beam`: denoise an archive of radiographs with Apache Beam.

The pipeline is `xdn.beam.pipeline` (its docstring and docs/beam.md say
what it does and how to run it on another runner). This entry point checks
that the `beam` extra is installed first, so that a core install gets one
line naming it instead of a traceback.
"""

import sys
from typing import Optional, Sequence

from xdn.cli import shared
from xdn import errors


def run(argv: Optional[Sequence[str]] = None) -> None:
  """Console-script entry point (setup.cfg: xdn-beam)."""
  try:
    errors.require('apache_beam', 'beam', 'xdn-beam', 'apache-beam')
  except errors.UserError as e:
    shared.exit_on_user_error(e)
  from xdn.beam import pipeline  # pylint: disable=g-import-not-at-top
  pipeline.run(argv)


if __name__ == '__main__':
  run(sys.argv[1:])
