"""The one Ctrl-C guard: a first signal asks long work to stop at its next
safe point (after the current file, at a step's end with a checkpoint); a
second one stops at once (KeyboardInterrupt).

  with stop.StopRequest(message='stopping after the current file') as guard:
    for item in work:
      ...
      if guard.requested:
        break
"""

import signal
import threading
from typing import Any, Callable, Dict, Optional, Sequence, Union

from absl import logging


class StopRequest:
  """Turns the first of `signals` into `requested` (logging `message`, a
  text or a function of the signal's number) and the second into
  KeyboardInterrupt. Off the main thread it leaves signals alone."""

  def __init__(self, signals: Sequence[int] = (signal.SIGINT,),
               message: Union[str, Callable[[int], str]] = 'stopping'):
    self.signal: Optional[int] = None
    self._signals = tuple(signals)
    self._message = message
    self._previous: Dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    return self.signal is not None

  def __enter__(self) -> 'StopRequest':
    self.signal = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in self._signals:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    if self.signal is not None:  # The second signal: stop now.
      raise KeyboardInterrupt
    self.signal = signum
    message = (self._message(signum) if callable(self._message) else
               self._message)
    logging.warning('Received %s: %s; a second one stops at once.',
                    signal.Signals(signum).name, message)

  def __exit__(self, *exc_info: Any) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}
