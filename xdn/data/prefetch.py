"""Host-side prefetching of batches on a background thread.

flax's `jax_utils.prefetch_to_device` (which train.py also uses) overlaps
only the copy to the device: the batch itself is made on the main thread.
Here the batch is *made* ahead (gathers, crops, the folder source's
downscaling), which on 2 CPU cores is several ms per batch that would
otherwise stall every step. grain would do this too, with worker processes
and another dependency; one thread suffices for numpy work that releases
the GIL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import queue
import threading

import numpy as np


class _Failure:
  """An exception raised on the prefetch thread, re-raised to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


_DONE = object()  # Sent after the last batch of a finite `steps`.


def prefetch(make: Callable[[int], np.ndarray], steps: Iterable[int],
             depth: int) -> Iterator[np.ndarray]:
  """Yields make(step) for each step, computing `depth` ahead on a thread.

  An exception in `make` is re-raised to the consumer. The thread stops when
  the returned generator is closed or garbage-collected. `depth <= 0` makes
  the batches synchronously, without a thread.
  """
  if depth <= 0:
    yield from map(make, steps)
    return
  ready: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.05)
        return True
      except queue.Full:
        pass
    return False

  def produce():
    try:
      for step in steps:
        if not put(make(step)):
          return
      put(_DONE)
    except BaseException as e:  # pylint: disable=broad-except
      put(_Failure(e))

  thread = threading.Thread(target=produce, daemon=True, name='xdn-prefetch')
  thread.start()
  try:
    while True:
      item = ready.get()
      if item is _DONE:
        return
      if isinstance(item, _Failure):
        raise item.error
      yield item
  finally:
    stop.set()
    thread.join(timeout=10)
