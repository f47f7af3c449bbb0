"""`xdn-beam`: denoise an archive of radiographs with Apache Beam.

The pipeline is `xdn.beam.pipeline` (its docstring and docs/beam.md say
what it does and how to run it on another runner). This entry point checks
that the `beam` extra is installed first, so that a core install gets one
line naming it instead of a traceback.
"""

import argparse
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
  argv = list(sys.argv[1:] if argv is None else argv)
  if '-h' in argv or '--help' in argv:
    # Beam's own parser lists none of xdn-beam's options: show them.
    parser = argparse.ArgumentParser(
        prog='xdn-beam', description='Denoise an archive of radiographs with '
        'Apache Beam (docs/beam.md).', epilog='Every other option is a Beam '
        'pipeline option: --runner, --direct_num_workers, '
        '--dask_client_address, --job_endpoint, ... (see Beam\'s docs).')
    pipeline.XdnOptions._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.print_help()
    return
  pipeline.run(argv)


if __name__ == '__main__':
  run(sys.argv[1:])
