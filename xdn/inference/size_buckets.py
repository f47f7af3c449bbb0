"""Size buckets: one compiled program for radiographs of many sizes.

XLA compiles a program per input shape, about a second each on a CPU, so a
folder of radiographs of many sizes used to compile the U-Net once per
size. Instead, an image is padded up to its bucket, the next size on a
ladder of `steps` sizes per octave (8: 1024, 1152, 1280, ..., 1920, 2048,
2304, ...; at most 1/8 more pixels per axis), and the U-Net is told where
the image lies in it (`xdn.models.unet.UNet`'s `valid`): it zeroes every
feature map outside the image before a convolution reads it, so the
output, cropped back, is what the image alone gives (up to float rounding,
tests/size_buckets_test.py). An image whose size is a bucket's own (1024,
1536, 2048 ...) is computed as it is, without masks. A folder of
radiographs from 512^2 to 3000^2 then compiles a few programs, and the
persistent compilation cache (`xdn.runtime.compile_cache`) keeps them for
the next run.

`pad` takes [B, H, W, C] numpy arrays; pixels outside the image
are the model's own padding (reflect to the size multiple, as the U-Net
pads) and zeros beyond, which the mask makes irrelevant.
"""

from typing import Tuple

import numpy as np

from xdn.models import unet

# Sizes per octave of the default ladder: at most 12.5 % more pixels per
# axis (6 % on average), against a compilation per distinct size without.
STEPS_PER_OCTAVE = 8


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def bucket_length(n: int, multiple: int = 1,
                  steps: int = STEPS_PER_OCTAVE) -> int:
  """The smallest ladder size >= n: m * 2**e for m in [steps, 2 steps),
  rounded up to a multiple of `multiple`; n itself (rounded up) when
  steps <= 0."""
  if n < 1:
    raise ValueError(f'size {n} must be >= 1')
  target = round_up(n, multiple)
  if steps <= 0:
    return target
  scale = 1
  while True:
    for m in range(steps, 2 * steps):
      size = round_up(m * scale, multiple)
      if size >= target:
        return size
    scale *= 2


def bucket_shape(height: int, width: int, multiple: int = 1,
                 steps: int = STEPS_PER_OCTAVE) -> Tuple[int, int]:
  """The bucket of an image of [height, width]: each axis on the ladder."""
  return (bucket_length(height, multiple, steps),
          bucket_length(width, multiple, steps))


def margin(bucket: int, multiple: int = 1,
           steps: int = STEPS_PER_OCTAVE) -> int:
  """The most an image padded to `multiple` can fall short of `bucket`
  (one axis): what the U-Net then masks (`unet.Region`'s margin)."""
  smallest = bucket
  while (smallest > multiple and
         bucket_length(smallest - multiple, multiple, steps) == bucket):
    smallest -= multiple
  return bucket - smallest


def pad(images: np.ndarray, multiple: int, steps: int = STEPS_PER_OCTAVE
        ) -> Tuple[np.ndarray, np.ndarray]:
  """[B, H, W, C] images padded into their bucket, and the valid region.

  The images are first padded as the U-Net pads them (`unet.pad_mode` up
  to a multiple of `multiple`), then with zeros to the bucket. Returns the
  padded images and int32 [rows, cols] of the valid region (the images
  padded to the multiple), for the U-Net's `valid`.
  """
  _, h, w, _ = images.shape
  pad_h, pad_w = -h % multiple, -w % multiple
  images = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                  mode=unet.pad_mode(h, w, pad_h, pad_w))
  bh, bw = bucket_shape(h, w, multiple, steps)
  images = np.pad(images, ((0, 0), (0, bh - h - pad_h), (0, bw - w - pad_w),
                           (0, 0)))
  return images, np.array([h + pad_h, w + pad_w], np.int32)


def margins(images_shape: Tuple[int, ...], multiple: int,
            steps: int = STEPS_PER_OCTAVE) -> Tuple[int, int]:
  """(rows, cols) margins of [B, H, W, C] images padded by `pad`."""
  return (margin(images_shape[1], multiple, steps),
          margin(images_shape[2], multiple, steps))
