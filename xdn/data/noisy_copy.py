"""Noisy-only copies of a clean set, to measure training without clean images.

The library half of `xdn-noisy-copy` (`xdn.cli.noisy_copy`, which shows
examples). `make_copy` copies a folder of radiographs (as
`data.name='folder'` reads it) or `chest_xray_sample`, the embedded set.
Every image is corrupted once, with a key made of the seed and its file
name (`image_key`: an image's noise does not depend on which others are
copied), and stored as a 16-bit PNG under its own name (extension `.png`).
The folder data source then puts each copy in the split of its original; a
self-supervised run on the copy never sees a clean image nor fresh noise.
The noise 'none' copies the files unchanged: from `chest_xray_sample` that
exports the embedded set as a folder.

The embedded set is split 70/10/20 by patient; train on its copy with
`--config.data.split_fractions=0.7,0.1,0.2` to keep those splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xdn.data.chest_xray_sample import chest_xray_sample_dataset_builder as sample
from xdn.data import folder
from xdn.data import patient_split
from xdn import errors
from xdn.io import atomic
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io
from xdn.noise import physics as noise_physics
from xdn.noise import report as noise_report
from xdn.noise import spec as noise_spec
from xdn.noise import synthetic as noise

SAMPLE = 'chest_xray_sample'
MANIFEST = 'noisy_copy.json'
SAMPLE_FRACTIONS = ','.join(str(v) for v in sample.SPLIT_FRACTIONS.values())


def parse_added_noise(text: str, correlation: Optional[float] = None
                      ) -> noise_spec.NoiseSpec:
  """The noise to add: a spec of `xdn.noise.spec` that can be drawn
  ('gaussian:25', 'correlated_gaussian:15,0.5', a preset or 'none');
  `correlation`, when given, replaces the spec's neighbour correlation."""
  added = noise_spec.parse(text, synthesis=True)
  if correlation is None:
    return added
  top = noise_physics.MAX_CORRELATION
  if not 0.0 <= correlation <= top:
    raise errors.UserError(f'a neighbour correlation must be in [0, {top}], '
                           f'got {correlation}')
  return dataclasses.replace(added, correlation=float(correlation))


def image_key(seed: int, name: str) -> jax.Array:
  """The noise key of one image: the seed folded with its name's md5."""
  digest = int(hashlib.md5(name.encode('utf-8')).hexdigest()[:7], 16)
  return jax.random.fold_in(jax.random.key(seed), digest)


def to_uint16(pixels: np.ndarray) -> np.ndarray:
  """[0, 1] pixels -> uint16 that xdn's readers map back to the same values.

  Readers scale a 16-bit image by the smallest detector depth holding its
  maximum (`image_io.bit_depth`): a dark image stored at 16 bits would be
  read as 12-bit and come back 16x too bright. So the image is stored at the
  depth its readers will infer.
  """
  pixels = np.clip(pixels, 0.0, 1.0)
  for bits in (16, 14, 12, 10, 8):
    stored = np.round(pixels * (2**bits - 1)).astype(np.uint16)
    if image_io.bit_depth(stored) == bits:
      return stored
  return stored  # 8 bits always holds: the loop ends there.


def corrupt_image(pixels: np.ndarray, key: jax.Array, kind: str,
                  level: float, read_noise: float, correlation: float = 0.0,
                  sharpen: float = 0.0, sharpen_radius: float = 2.0
                  ) -> np.ndarray:
  """One [H, W] image in [0, 1] corrupted (and clipped, as in training).

  `sharpen` > 0 unsharp-masks the noise alone (n + sharpen (n - blur n)):
  the texture a vendor's edge enhancement gives it, a noise the shipped
  model was never trained on, with the clean image still the reference.
  """
  clean = jnp.asarray(pixels, jnp.float32)[None, ..., None]
  noisy = noise.add_noise(key, clean, kind, level, clip=sharpen <= 0,
                          read_noise=read_noise, correlation=correlation)
  if sharpen > 0:
    n = np.asarray(noisy - clean)[0, ..., 0]
    n = n + sharpen * (n - noise_report.gaussian_blur(n, sharpen_radius))
    return np.clip(np.asarray(pixels, np.float32) + n, 0.0, 1.0)
  return np.asarray(noisy)[0, ..., 0]


def list_sources(src: str, splits: Sequence[str],
                 fractions: str) -> list[tuple[str, str]]:
  """(path, name relative to the copy) of each image of `splits` in `src`."""
  unknown = set(splits) - set(folder.SPLITS)
  if unknown:
    raise errors.UserError(f'unknown splits {sorted(unknown)} to copy; use '
                           f'{folder.SPLITS}')
  if src == SAMPLE:
    rows = sample.read_labels(sample._DATA_DIR / 'labels.csv')  # pylint: disable=protected-access
    split_of = patient_split.assign_patients(
        (row['patient_id'] for row in rows), sample.SPLIT_FRACTIONS)
    images = sample._DATA_DIR / 'images'  # pylint: disable=protected-access
    return [(str(images / row['filename']), row['filename']) for row in rows
            if split_of[row['patient_id']] in splits]
  by_split = folder.split_files(folder.list_files(src), fractions)
  return [(os.path.join(src, name), name) for split in folder.SPLITS
          if split in splits for name in by_split[split]]


def make_copy(src: str, out: str, noise_text: str, *, seed: int = 0,
              read_noise: float = noise.DEFAULT_READ_NOISE,
              splits: Sequence[str] = folder.SPLITS,
              split_fractions: str = '0.8,0.1,0.1', num_images: int = 0,
              overwrite: bool = False, correlation: Optional[float] = None,
              sharpen: float = 0.0, sharpen_radius: float = 2.0) -> dict:
  """Writes the copy of `src` into `out`; returns its manifest.

  `noise_text`: see `parse_added_noise`; `correlation` None: the spec's.
  """
  added = parse_added_noise(noise_text, correlation)
  kind, level, correlation = added.kind, added.level, added.correlation
  sources = list_sources(src, splits, split_fractions)
  if num_images > 0:
    sources = sorted(sources, key=lambda source: source[1])[:num_images]
  if os.path.abspath(out) == os.path.abspath(src):
    raise errors.UserError("the copy's folder must differ from its source: "
                           'the originals are never overwritten')
  names = {}
  for path, name in sources:
    target = name if kind == 'none' else os.path.splitext(name)[0] + '.png'
    if target in names:
      raise errors.UserError(f'{names[target]!r} and {name!r} would both be '
                             f'written as {target!r}; rename one')
    names[target] = name
  existing = [t for t in names if os.path.exists(os.path.join(out, t))]
  if existing and not overwrite:
    raise errors.UserError(f'{os.path.join(out, existing[0])} exists; let '
                           'the copy overwrite it or choose another folder')
  for (path, name), target in zip(sources, names):
    destination = os.path.join(out, target)
    if kind == 'none':
      with open(path, 'rb') as source, atomic.open_atomic(destination) as f:
        shutil.copyfileobj(source, f)
      continue
    pixels = radiograph_io.read_radiograph(path).pixels
    noisy = corrupt_image(pixels, image_key(seed, name), kind, level,
                          read_noise, correlation, sharpen, sharpen_radius)
    atomic.write_bytes(image_io.encode_png(to_uint16(noisy)), destination)
  manifest = {'src': src, 'noise': kind, 'level': level,
              'read_noise': read_noise, 'correlation': correlation,
              'sharpen': sharpen, 'sharpen_radius': sharpen_radius,
              'seed': seed, 'splits': list(splits),
              'num_images': len(sources),
              'split_fractions': (SAMPLE_FRACTIONS if src == SAMPLE
                                  else split_fractions)}
  atomic.write_json(manifest, os.path.join(out, MANIFEST), indent=2)
  return manifest
