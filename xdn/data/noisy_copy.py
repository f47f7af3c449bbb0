"""Noisy-only copies of a clean set, to measure training without clean images.

  python -m xdn.data.noisy_copy --src=chest_xray_sample --out=data/cxr_g25 \
      --noise=gaussian:25 --seed=0
  python -m xdn.data.noisy_copy --src=/data/nih1024 --out=data/nih_pg50 \
      --noise=poisson_gaussian:50 --read_noise=2
  python -m xdn.data.noisy_copy --src=/data/nih1024 --out=data/nih_vendor \
      --noise=correlated_gaussian:15 --correlation=0.5 --sharpen=1.0
  python -m xdn.data.noisy_copy --src=chest_xray_sample --out=data/cxr --noise=none
  python -m xdn.data.noisy_copy --src=/data/nih1024 --out=data/nih20_g75 \
      --noise=gaussian:75 --splits=train --num_images=20

`--src` is a folder of radiographs (as `data.name='folder'` reads it) or
`chest_xray_sample`, the embedded set. Every image is corrupted once, with a
key made of `--seed` and its file name (so an image's noise does not depend
on which others are copied), and stored as a 16-bit PNG under its own name
(extension `.png`). The folder data source then puts each copy in the
split of its original; a self-supervised run on the copy never sees a clean
image nor fresh noise. `--noise=none` copies the files unchanged: with
`--src=chest_xray_sample` that exports the embedded set as a folder.

The embedded set is split 70/10/20 by patient; train on its copy with
`--config.data.split_fractions=0.7,0.1,0.2` to keep those splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from xdn import errors
from xdn.io import images as image_io
from xdn.noise import synthetic as noise
from xdn.noise import report as noise_report
from xdn.io import radiographs as radiograph_io
from xdn.data import folder
from xdn.data import patient_split
from xdn.data.chest_xray_sample import chest_xray_sample_dataset_builder as sample

SAMPLE = 'chest_xray_sample'
MANIFEST = 'noisy_copy.json'
SAMPLE_FRACTIONS = ','.join(str(v) for v in sample.SPLIT_FRACTIONS.values())

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags; defined on use so importing this module adds none."""
  flags.DEFINE_string('src', None, f'Folder of clean radiographs, or {SAMPLE!r}'
                      ' (the embedded set).')
  flags.DEFINE_string('out', None, 'Folder for the copies (created).')
  flags.DEFINE_string('noise', 'gaussian:25', 'KIND:LEVEL as in xdn.noise.synthetic '
                      '(gaussian:25, poisson_gaussian:50, speckle:0.2), a '
                      "preset, or 'none' to copy the files unchanged.")
  flags.DEFINE_float('read_noise', noise.DEFAULT_READ_NOISE, 'poisson_gaussian read-noise sigma '
                     '(0-255 scale).')
  flags.DEFINE_float('correlation', 0.0, 'correlated_gaussian / xray: the '
                     "noise's neighbour correlation.")
  flags.DEFINE_float('sharpen', 0.0, "A vendor's edge enhancement of the "
                     'noise: n + AMOUNT (n - blur(n)), unsharp masking with '
                     'a Gaussian blur of --sharpen_radius px (0: none).')
  flags.DEFINE_float('sharpen_radius', 2.0, 'Blur width (px) of --sharpen.')
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_list('splits', list(folder.SPLITS), 'Splits to copy.')
  flags.DEFINE_string('split_fractions', '0.8,0.1,0.1', 'Folder --src: its '
                      'patient split (data.split_fractions), for --splits.')
  flags.DEFINE_integer('num_images', 0, 'Copy only the first this many '
                       'images of --splits, by name (0: all).')
  flags.DEFINE_bool('overwrite', False, 'Replace existing files in --out.')


def parse_noise(text: str) -> tuple[str, float]:
  """'gaussian:25', a preset name or 'none' -> (kind, level)."""
  kind, _, level = text.strip().partition(':')
  try:
    value = float(level) if level else 0.0
  except ValueError:
    raise errors.UserError(f'--noise={text!r}: level {level!r} is not a '
                           'number; write KIND:LEVEL, e.g. gaussian:25') from None
  if kind not in noise.PRESETS and kind != 'none' and not level:
    raise errors.UserError(f'--noise={text!r} needs a level: KIND:LEVEL, '
                           'e.g. gaussian:25')
  return noise.resolve(kind, value)


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


def corrupt(pixels: np.ndarray, key: jax.Array, kind: str, level: float,
            read_noise: float, correlation: float = 0.0,
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
    raise errors.UserError(f'--splits: unknown {sorted(unknown)}; use '
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
              overwrite: bool = False, correlation: float = 0.0,
              sharpen: float = 0.0, sharpen_radius: float = 2.0) -> dict:
  """Writes the copy of `src` into `out`; returns its manifest."""
  kind, level = parse_noise(noise_text)
  sources = list_sources(src, splits, split_fractions)
  if num_images > 0:
    sources = sorted(sources, key=lambda source: source[1])[:num_images]
  if os.path.abspath(out) == os.path.abspath(src):
    raise errors.UserError('--out must differ from --src: the originals are '
                           'never overwritten')
  names = {}
  for path, name in sources:
    target = name if kind == 'none' else os.path.splitext(name)[0] + '.png'
    if target in names:
      raise errors.UserError(f'{names[target]!r} and {name!r} would both be '
                             f'written as {target!r}; rename one')
    names[target] = name
  existing = [t for t in names if os.path.exists(os.path.join(out, t))]
  if existing and not overwrite:
    raise errors.UserError(f'{os.path.join(out, existing[0])} exists; pass '
                           '--overwrite or another --out')
  for (path, name), target in zip(sources, names):
    destination = os.path.join(out, target)
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    if kind == 'none':
      shutil.copyfile(path, destination)
      continue
    pixels = radiograph_io.read_radiograph(path).pixels
    noisy = corrupt(pixels, image_key(seed, name), kind, level, read_noise,
                    correlation, sharpen, sharpen_radius)
    with open(destination, 'wb') as f:
      f.write(image_io.encode_png(to_uint16(noisy)))
  manifest = {'src': src, 'noise': kind, 'level': level,
              'read_noise': read_noise, 'correlation': correlation,
              'sharpen': sharpen, 'sharpen_radius': sharpen_radius,
              'seed': seed, 'splits': list(splits),
              'num_images': len(sources),
              'split_fractions': (SAMPLE_FRACTIONS if src == SAMPLE
                                  else split_fractions)}
  with open(os.path.join(out, MANIFEST), 'w') as f:
    json.dump(manifest, f, indent=2)
  return manifest


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.src or not FLAGS.out:
    raise SystemExit('error: give --src (a folder or chest_xray_sample) and '
                     '--out')
  try:
    manifest = make_copy(FLAGS.src, FLAGS.out, FLAGS.noise, seed=FLAGS.seed,
                         read_noise=FLAGS.read_noise, splits=FLAGS.splits,
                         split_fractions=FLAGS.split_fractions,
                         num_images=FLAGS.num_images,
                         overwrite=FLAGS.overwrite,
                         correlation=FLAGS.correlation,
                         sharpen=FLAGS.sharpen,
                         sharpen_radius=FLAGS.sharpen_radius)
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None
  logging.info('Wrote %d images to %s', manifest['num_images'], FLAGS.out)
  print(f"{manifest['num_images']} images ({manifest['noise']} "
        f"{manifest['level']:g}) in {FLAGS.out}; train on them with "
        f'--config.data.manual_dir={FLAGS.out} '
        f"--config.data.split_fractions={manifest['split_fractions']}",
        file=sys.stdout)


if __name__ == '__main__':
  define_flags()
  app.run(main)
