"""The one atomic writer: every file any xdn command writes goes through it.

A file is written to a temporary name beside its target (so the rename
stays on one file system) and renamed over it only once whole: a crash,
even `kill -9`, leaves either the old file or the whole new one, never half
a file. Temporary names end in `.tmp` and carry the process and thread, so
concurrent writers never share one and `is_temporary` finds what a killed
run left behind.
"""

import contextlib
import io
import json
import os
import threading
from typing import Any, IO, Iterator


def temporary_path(target: str) -> str:
  """Where `target` is written before it is renamed: beside it, unique per
  process and thread, never an output's name (it ends in .tmp)."""
  return f'{target}.{os.getpid()}.{threading.get_ident()}.tmp'


def is_temporary(path: str) -> bool:
  """Whether `path` is a `temporary_path` (a killed run may leave some)."""
  parts = path.rsplit('.', 3)
  return (len(parts) == 4 and parts[3] == 'tmp' and parts[1].isdigit() and
          parts[2].isdigit())


@contextlib.contextmanager
def open_atomic(target: str, mode: str = 'wb', **kwargs: Any
                ) -> Iterator[IO]:
  """`open(target, mode)` that appears at `target` only when the block ends
  without an exception; its folder is created. Text modes take `open`'s
  keyword arguments (encoding, newline)."""
  if mode not in ('w', 'wb', 'wt'):
    raise ValueError(f'open_atomic writes whole files, not mode {mode!r}')
  os.makedirs(os.path.dirname(target) or '.', exist_ok=True)
  tmp = temporary_path(target)
  try:
    with open(tmp, mode, **kwargs) as f:
      yield f
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(data: bytes, target: str) -> None:
  """Writes `data` to `target` atomically."""
  with open_atomic(target, 'wb') as f:
    f.write(data)


def write_text(text: str, target: str) -> None:
  """Writes `text` (UTF-8) to `target` atomically."""
  write_bytes(text.encode('utf-8'), target)


def write_json(value: Any, target: str, indent: int = 1) -> None:
  """Writes `value` as JSON to `target` atomically."""
  write_text(json.dumps(value, indent=indent), target)


def save_figure(figure: Any, target: str, **savefig_kwargs: Any) -> None:
  """A matplotlib figure to `target` atomically, in the format its
  extension names."""
  buffer = io.BytesIO()
  fmt = os.path.splitext(target)[1].lstrip('.') or 'png'
  figure.savefig(buffer, format=fmt, **savefig_kwargs)
  write_bytes(buffer.getvalue(), target)
