"""Batch helpers shared by training, inference and the benchmarks."""

from typing import Any, Tuple

import jax
import numpy as np


def pad_batch(batch: np.ndarray, size: int) -> Tuple[np.ndarray, int]:
  """Zero-pads `batch` along axis 0 to `size` rows; returns it and the count.

  One compiled shape then serves every batch, the last one included.
  """
  count = len(batch)
  if count > size:
    raise ValueError(f'batch of {count} is larger than {size}')
  if count == size:
    return batch, count
  pad = np.zeros((size - count,) + batch.shape[1:], batch.dtype)
  return np.concatenate([batch, pad]), count


def next_power_of_two(n: int, cap: int) -> int:
  """The smallest power of two >= n, at most `cap` (and at least 1)."""
  return max(min(1 << (max(n, 1) - 1).bit_length(), cap), 1)


def unreplicate(tree: Any) -> Any:
  """The first replica of each array of a pmapped pytree.

  (flax's `jax_utils.unreplicate` keeps the device axis of a pmap over one
  device of a multi-device host; this does not.)
  """
  return jax.tree.map(
      lambda x: x.addressable_shards[0].data.reshape(x.shape[1:]), tree)


def local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows [local devices, ...] of a pmap output.

  With several processes (multi-host) a pmap output also spans other
  processes' devices, which this process cannot read.
  """
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])
