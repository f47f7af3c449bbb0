"""The slow baselines' outputs, kept on disk under a hash of their input.

BM3D takes ~20 s for one 1024x1024 image: a rerun of the same grid (say,
with another model) reuses the baselines' outputs. An entry is
`NAME-HASH.npy`, HASH the first 20 hex digits of the SHA-1 of the noisy
images' bytes, written atomically (`xdn.io.atomic`). An empty folder name
keeps nothing.
"""

import hashlib
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from xdn.io import atomic

Apply = Callable[[np.ndarray], np.ndarray]


def entry_path(cache_dir: str, name: str, noisy: np.ndarray) -> str:
  """Where baseline `name`'s output on `noisy` is kept ('' without a cache)."""
  if not cache_dir:
    return ''
  digest = hashlib.sha1(np.ascontiguousarray(noisy).tobytes()).hexdigest()
  return os.path.join(cache_dir, f'{name}-{digest[:20]}.npy')


def _save(path: str, array: np.ndarray) -> None:
  with atomic.open_atomic(path, 'wb') as f:
    np.save(f, array)


def cached(cache_dir: str, apply: Apply, name: str,
           noisy: np.ndarray) -> np.ndarray:
  """apply(noisy) for images [N, H, W, 1], kept in `cache_dir` as a whole."""
  path = entry_path(cache_dir, name, noisy)
  if path and os.path.exists(path):
    return np.load(path)
  out = apply(noisy)
  if path:
    _save(path, out)
  return out


def cached_per_image(cache_dir: str, apply: Apply, name: str,
                     noisy: Sequence[np.ndarray]) -> List[np.ndarray]:
  """A baseline on images of any sizes, [H, W, 1] each, cached one by one.

  Images of the same shape missing from the cache go to `apply` together,
  so its worker pool shares them out.
  """
  outputs: List[Optional[np.ndarray]] = [None] * len(noisy)
  paths = [entry_path(cache_dir, name, n[None]) for n in noisy]
  missing: Dict[Tuple[int, ...], List[int]] = {}
  for i, path in enumerate(paths):
    if path and os.path.exists(path):
      outputs[i] = np.load(path)[0]
    else:
      missing.setdefault(noisy[i].shape, []).append(i)
  for indices in missing.values():
    results = apply(np.stack([noisy[i] for i in indices]))
    for i, result in zip(indices, results):
      outputs[i] = result
      if paths[i]:
        _save(paths[i], result[None])
  return outputs
