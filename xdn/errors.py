"""The one exception type for bad input and bad configuration.

Entry points (`run.py` and every `xdn-*` command) print a `UserError` as one
line that says what to do; any other exception is a bug and keeps its
traceback. It subclasses ValueError so callers that caught the ValueErrors
xdn raised before still do. `MissingExtra` is the `UserError` of an optional
dependency that is not installed: the commands exit 2 on it.
"""

import importlib
from types import ModuleType


class UserError(ValueError):
  """Bad input or configuration: the message names it and says what to do."""


class MissingExtra(UserError):
  """An optional dependency is not installed: the message names the extra."""

  def __init__(self, extra: str, package: str, what: str):
    super().__init__(f'{what} needs the optional package {package!r}: '
                     f'pip install "xdn[{extra}]"')
    self.extra = extra


def require(module: str, extra: str, what: str, package: str = ''
            ) -> ModuleType:
  """`import module`, or `MissingExtra` naming the extra that installs it.

  `what` is what needs it ('xdn-beam', 'the BM3D baseline'); `package` the
  PyPI name where it differs from the module's.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    top = module.split('.')[0]
    if e.name is not None and e.name.split('.')[0] != top:
      raise  # The extra is installed but something it needs is broken.
    raise MissingExtra(extra, package or top, what) from None
