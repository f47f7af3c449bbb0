"""Whole radiographs of any size: denoised whole, in a size bucket, or in
overlapping tiles blended with linear ramps.

`denoise_image` is the one rule, for `xdn-denoise`, `xdn-evaluate`, Beam
and the library alike: a model of any input size sees images up to
MAX_WHOLE_PIXELS whole (padded into a size bucket where it can,
`xdn.inference.size_buckets`), larger ones in TILE-pixel tiles; a model
made for a fixed size (the seed models) sees tiles of that size. It takes
any callable [B, H, W, 1] -> [B, H, W, 1] with `models.Capabilities`
(`xdn.inference.Denoiser`'s), or a plain one (tests' stand-ins); one that
declares `takes_valid` also has the Denoiser's `bucketed` and
`bucket_steps`.
"""

from typing import Any, List, Optional, Tuple

from absl import logging
import numpy as np

from xdn import errors
from xdn.inference import size_buckets
from xdn.inference import told as told_lib
from xdn import models
from xdn.noise.estimation import NoiseEstimate
from xdn.runtime import batching

# Tiles of the fully convolutional models: TILE pixels with OVERLAP pixels
# shared by neighbours (blended with linear ramps). 512 + 32: a 2048x2048
# image is 4x4 tiles, 13% more pixels than the image itself.
TILE = 544
OVERLAP = 32
# Images up to this size are denoised whole, larger ones in tiles: the one
# rule of `denoise_image` and `xdn-denoise`. Whole is faster (no overlap,
# one call: a 2048x2048 radiograph in 0.8x the time of 544-px tiles) and
# stays under 2 GB of memory at 2048x2048 (xdn-bench --inference).
MAX_WHOLE_PIXELS = 2048 * 2048


def ramp_window(tile: int, overlap: int) -> np.ndarray:
  """1-D blending weights: linear ramps over `overlap` pixels at each end.

  Never zero, so a pixel covered by a single tile (at the image border) keeps
  that tile's value after normalising by the summed weights.
  """
  i = np.arange(tile, dtype=np.float32) + 0.5
  ramp = np.minimum(i, tile - i) / max(overlap, 1)
  return np.clip(ramp, 0.0, 1.0).astype(np.float32)


def tile_grid(length: int, tile: int, overlap: int,
              align: int = 1) -> Tuple[List[int], int]:
  """Tile starts along one axis, and the padded length they cover.

  Tiles advance by `tile - overlap` rounded down to a multiple of `align`;
  the axis is padded (by less than one stride) so the last tile ends at its
  end, which keeps every tile on the aligned grid.
  """
  stride = max((tile - overlap) // align * align, align)
  steps = max(-(-(length - tile) // stride), 0)
  return [i * stride for i in range(steps + 1)], tile + steps * stride


def denoise_tiled(denoiser: Any, image: np.ndarray, tile: int,
                  overlap: int, batch_size: int = 32, align: int = 1,
                  noise_level: Optional[NoiseEstimate] = None) -> np.ndarray:
  """Denoises a [H, W] image in overlapping `tile` x `tile` tiles.

  The image is mirror-padded up to the tile grid (small images up to one
  tile). Tiles are denoised `batch_size` at a time and blended with
  `ramp_window` weights. Every tile is told the whole image's noise level.
  """
  image = np.asarray(image, np.float32)
  h, w = image.shape
  ys, ph = tile_grid(h, tile, overlap, align)
  xs, pw = tile_grid(w, tile, overlap, align)
  # 'symmetric' also works for 1-pixel images and pads longer than them.
  image = np.pad(image, ((0, ph - h), (0, pw - w)), mode='symmetric')
  window = np.outer(ramp_window(tile, overlap), ramp_window(tile, overlap))
  total = np.zeros((ph, pw), np.float32)
  weight = np.zeros((ph, pw), np.float32)
  corners = [(y, x) for y in ys for x in xs]
  for first in range(0, len(corners), batch_size):
    batch = corners[first:first + batch_size]
    tiles = np.stack([image[y:y + tile, x:x + tile] for y, x in batch])
    # Pad to a power of two: a compiled model then serves every image with
    # a handful of batch shapes instead of one per tile count.
    tiles, _ = batching.pad_batch(
        tiles, batching.next_power_of_two(len(batch), batch_size))
    outputs = np.asarray(_call(denoiser, tiles[..., None], noise_level))[..., 0]
    for (y, x), out in zip(batch, outputs):
      total[y:y + tile, x:x + tile] += window * out
      weight[y:y + tile, x:x + tile] += window
  return (total / weight)[:h, :w]


def _call(denoiser: Any, images: np.ndarray,
          noise_level: Optional[NoiseEstimate]) -> np.ndarray:
  # A model is told a level only when there is one: a stand-in callable
  # images -> images serves too.
  if noise_level is None:
    return denoiser(images)
  return denoiser(images, [noise_level] * len(images))


def denoise_image(denoiser: Any, image: np.ndarray, *, tile: int = 0,
                  overlap: int = -1, batch_size: int = 32,
                  max_pixels: int = MAX_WHOLE_PIXELS,
                  noise_level: Optional[NoiseEstimate] = None) -> np.ndarray:
  """Denoises one [H, W] float image in [0, 1], whole or in tiles.

  A model told its noise is told `noise_level`, or else the level
  estimated from the whole image (logged), for every tile. `tile` (0:
  automatic) and `overlap` (-1: automatic) in pixels.
  """
  image = np.asarray(image, np.float32)
  if image.ndim != 2:
    raise errors.UserError(
        f'expected a 2-D [H, W] image, got shape {image.shape}')
  capabilities = models.capabilities_of(denoiser)
  level = told_lib.noise_for(capabilities, image, noise_level)
  if noise_level is None and level is not None:
    logging.info('Estimated noise: %s', level.describe())
  fixed = capabilities.fixed_size
  if fixed is None and tile <= 0 and image.size <= max_pixels:
    if capabilities.takes_valid and denoiser.bucketed(image.shape):
      # One compiled program per bucket, not per size; same output.
      multiple, steps = capabilities.size_multiple, denoiser.bucket_steps
      padded, valid = size_buckets.pad(image[None, ..., None], multiple,
                                       steps)
      out = denoiser(padded, None if level is None else [level], valid,
                     size_buckets.margins(padded.shape, multiple, steps))
    else:
      out = np.asarray(_call(denoiser, image[None, ..., None], level))
    return out[0, :image.shape[0], :image.shape[1], 0]
  if fixed is not None:
    if tile > 0 and tile != fixed:
      raise errors.UserError(
          f'model {denoiser.name!r} takes {fixed}x{fixed} tiles, not '
          f'{tile}x{tile}; leave the tile size automatic (0) or make it '
          f'{fixed}')
    tile, align = fixed, 1
    overlap = tile // 4 if overlap < 0 else overlap
  else:
    tile = tile if tile > 0 else TILE
    align = capabilities.size_multiple
    overlap = OVERLAP if overlap < 0 else overlap
  if overlap >= tile:
    raise errors.UserError(f'a tile overlap of {overlap} px must be smaller '
                           f'than the tile ({tile} px)')
  return denoise_tiled(denoiser, image, tile, overlap, batch_size, align,
                       level)
