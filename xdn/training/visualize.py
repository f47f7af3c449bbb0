"""Host-side pictures: image grids (PNG) and the VAE's training GIF."""

import os
from typing import Sequence

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from xdn.io import images as image_io


def image_grid(columns: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """Lays out columns of images side by side: each column is [N, H, W, 1].

  Returns a uint8 [rows, cols] picture with `pad` white pixels between cells.
  """
  n, h, w, _ = columns[0].shape
  grid = np.full((n * (h + pad) + pad, len(columns) * (w + pad) + pad), 255,
                 np.uint8)
  for c, column in enumerate(columns):
    for r, image in enumerate(image_io.to_uint8(column[..., 0])):
      y, x = pad + r * (h + pad), pad + c * (w + pad)
      grid[y:y + h, x:x + w] = image
  return grid


def tile(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
  """[N, H, W, 1] images -> one uint8 picture, `columns` images per row."""
  rows = -(-len(images) // columns)
  padded = np.ones((rows * columns,) + images.shape[1:], np.float32)
  padded[:len(images)] = images
  padded = padded.reshape((rows, columns) + images.shape[1:])
  return image_grid([padded[:, c] for c in range(columns)], pad)


def save_png(path: str, picture: np.ndarray) -> None:
  """Writes a uint8 picture atomically (a partial file is never left)."""
  tmp = f'{path}.tmp'
  Image.fromarray(picture).save(tmp, format='PNG')
  os.replace(tmp, path)


def save_gif(path: str, pictures: Sequence[np.ndarray],
             seconds_per_frame: float = 0.2) -> None:
  """Writes an animated GIF (looping) of same-sized uint8 pictures."""
  tmp = f'{path}.tmp'
  imageio.mimsave(tmp, list(pictures), format='GIF',
                  duration=seconds_per_frame * 1000, loop=0)
  os.replace(tmp, path)
