"""The one exception type for bad input and bad configuration.

Entry points (`run.py`, `xdn-evaluate`, `xdn-denoise`, `xdn-bench`) print a
`UserError` as one line that says what to do; any other exception is a bug
and keeps its traceback. It subclasses ValueError so callers that caught the
ValueErrors xdn raised before still do.
"""


class UserError(ValueError):
  """Bad input or configuration: the message names it and says what to do."""
