"""xdn-denoise's per-file guard (xdn.inference.folder): any failure of a file
is one line naming it.

Unexpected exception types are reported and the batch goes on; out of memory
and Ctrl-C are not swallowed (Ctrl-C stops after the current file).
"""

import logging as std_logging
import os
import signal

import numpy as np
from PIL import Image
import pytest

from xdn.inference import folder as folder_lib


class Denoiser:
  """Identity, except `action(call_number)` may raise or signal first."""
  name, step = 'test', 0

  def __init__(self, action=lambda n: None):
    self.action, self.calls = action, 0

  def __call__(self, images):
    self.calls += 1
    self.action(self.calls)
    return images


def _folder(tmp_path, count: int = 4):
  folder = tmp_path / 'in'
  folder.mkdir()
  for i in range(count):
    pixels = (np.arange(20 * 30).reshape(20, 30) * (i + 1) % 256)
    Image.fromarray(pixels.astype(np.uint8)).save(folder / f'{i}.png')
  return folder


def _raise_on(call: int, error: BaseException):
  def action(n):
    if n == call:
      raise error
  return action


def _records(caplog, level):
  return [r for r in caplog.records if r.levelname == level]


def test_unexpected_exception_is_one_line_and_the_batch_goes_on(tmp_path,
                                                                caplog):
  folder = _folder(tmp_path)
  denoiser = Denoiser(_raise_on(2, TypeError('unsupported operand <object '
                                             'at 0x7f00deadbeef>')))
  with caplog.at_level(std_logging.DEBUG):
    failed = folder_lib.denoise_files(
        denoiser, [str(folder)], str(tmp_path / 'out'),
        failure_hint='run with --verbose for the traceback, and ')
  assert failed == 1
  assert sorted(os.listdir(tmp_path / 'out')) == ['0.png', '2.png', '3.png']
  errors = _records(caplog, 'ERROR')
  assert len(errors) == 1
  line = errors[0].getMessage()
  assert line.startswith(str(folder / '1.png'))
  assert 'unexpected TypeError' in line and '--verbose' in line
  assert '\n' not in line and '0x7f00deadbeef' not in line
  assert errors[0].exc_info is None  # The traceback is not in the line...
  debug = [r for r in _records(caplog, 'DEBUG') if r.exc_info]
  assert len(debug) == 1  # ...but at debug level, never silently dropped.
  summary = [r.getMessage() for r in _records(caplog, 'WARNING')]
  assert summary == [f'1 failed: {folder / "1.png"}']


def test_verbose_logs_the_traceback(tmp_path, caplog):
  folder = _folder(tmp_path, 2)
  with caplog.at_level(std_logging.INFO):
    failed = folder_lib.denoise_files(
        Denoiser(_raise_on(1, KeyError('x'))), [str(folder)],
        str(tmp_path / 'out'), verbose=True)
  assert failed == 1
  tracebacks = [r for r in _records(caplog, 'ERROR') if r.exc_info]
  assert len(tracebacks) == 1
  assert isinstance(tracebacks[0].exc_info[1], KeyError)


def test_a_write_failure_is_one_line(tmp_path, caplog):
  folder = _folder(tmp_path, 2)
  (folder / 'sub').mkdir()
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'sub' / 'x.png')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'sub').write_text('a file where the output folder should be')
  with caplog.at_level(std_logging.ERROR):
    failed = folder_lib.denoise_files(Denoiser(), [str(folder)], str(out))
  assert failed == 1
  errors = [r.getMessage() for r in _records(caplog, 'ERROR')]
  assert len(errors) == 1 and 'x.png' in errors[0]
  assert sorted(os.listdir(out)) == ['0.png', '1.png', 'sub']


@pytest.mark.parametrize('error', [MemoryError(), RuntimeError(
    'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB')],
                         ids=['host', 'accelerator'])
def test_out_of_memory_is_not_swallowed(tmp_path, caplog, error):
  if isinstance(error, RuntimeError):  # As jaxlib names its error type.
    error = type('XlaRuntimeError', (RuntimeError,), {})(str(error))
  folder = _folder(tmp_path)
  with caplog.at_level(std_logging.INFO), pytest.raises(type(error)):
    folder_lib.denoise_files(Denoiser(_raise_on(2, error)), [str(folder)],
                          str(tmp_path / 'out'))
  assert os.listdir(tmp_path / 'out') == ['0.png']  # What was written stays.
  messages = [r.getMessage() for r in caplog.records]
  assert any('out of memory; stopping' in m for m in messages)
  assert any(m.startswith('1 of 4 files denoised') for m in messages)


def test_ctrl_c_stops_after_the_current_file(tmp_path, caplog):
  folder = _folder(tmp_path)

  def ctrl_c(n):
    if n == 2:
      os.kill(os.getpid(), signal.SIGINT)

  before = signal.getsignal(signal.SIGINT)
  with caplog.at_level(std_logging.INFO), pytest.raises(KeyboardInterrupt):
    folder_lib.denoise_files(Denoiser(ctrl_c), [str(folder)],
                          str(tmp_path / 'out'))
  # The file being denoised at Ctrl-C is finished; no later one is started.
  assert sorted(os.listdir(tmp_path / 'out')) == ['0.png', '1.png']
  messages = [r.getMessage() for r in caplog.records]
  assert any('2 of 4 files not done' in m for m in messages)
  assert signal.getsignal(signal.SIGINT) is before  # Handler restored.


def test_second_ctrl_c_stops_at_once_leaving_no_partial_file(tmp_path):
  folder = _folder(tmp_path)

  def ctrl_c_twice(n):
    if n == 2:
      os.kill(os.getpid(), signal.SIGINT)
      os.kill(os.getpid(), signal.SIGINT)

  with pytest.raises(KeyboardInterrupt):
    folder_lib.denoise_files(Denoiser(ctrl_c_twice), [str(folder)],
                          str(tmp_path / 'out'))
  assert os.listdir(tmp_path / 'out') == ['0.png']
