"""Tests for xdn.io.images: decoding every common file flavour to grayscale."""

import io

import numpy as np
from PIL import Image
import pytest

from xdn.io import images as image_io


def _gradient(h=40, w=32):
  y, x = np.mgrid[:h, :w]
  return ((y * 5 + x * 3) % 256).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _write(tmp_path, name, data):
  path = tmp_path / name
  path.write_bytes(data)
  return path


def test_8bit_grayscale_png_is_exact(tmp_path):
  gray = _gradient()
  path = _write(tmp_path, 'l.png', _encode(Image.fromarray(gray), 'PNG'))
  out = image_io.read_grayscale(path)
  assert out.dtype == np.uint8 and out.shape == (40, 32)
  np.testing.assert_array_equal(out, gray)


@pytest.mark.parametrize('mode', ['RGB', 'RGBA'])
def test_rgb_with_equal_channels_takes_one_channel_exactly(tmp_path, mode):
  gray = _gradient()
  channels = [gray] * 3 + ([np.full_like(gray, 7)] if mode == 'RGBA' else [])
  image = Image.fromarray(np.stack(channels, -1), mode)
  path = _write(tmp_path, f'{mode}.png', _encode(image, 'PNG'))
  out = image_io.read_grayscale(path)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, gray)  # Alpha ignored, no rounding drift.


def test_colour_rgb_gives_luma():
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 200
  out = image_io.decode_grayscale(
      _encode(Image.fromarray(rgb), 'PNG'), 'red.png')
  assert out.shape == (4, 4)
  assert np.all(out == round(200 * 0.299))


def test_16bit_png_keeps_depth(tmp_path):
  deep = (np.arange(40 * 32).reshape(40, 32) * 50).astype(np.uint16)
  path = _write(tmp_path, 'd.png', _encode(Image.fromarray(deep), 'PNG'))
  out = image_io.read_grayscale(path)
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, deep)
  assert image_io.bit_depth(out) == 16
  eight = image_io.to_uint8(out)
  assert eight.dtype == np.uint8 and eight.min() == 0
  assert eight.max() == round(int(deep.max()) * 255 / 65535)  # 249, not 255.
  # Scaling, not clipping: order is preserved and mid-grey maps to mid-grey.
  assert np.all(np.diff(eight.ravel().astype(int)) >= 0)


def test_12bit_data_in_16bit_container_uses_full_range():
  twelve = np.array([[0, 2048, 4095]], np.uint16)
  assert image_io.bit_depth(twelve) == 12
  np.testing.assert_array_equal(image_io.to_uint8(twelve), [[0, 128, 255]])
  np.testing.assert_allclose(image_io.to_float01(twelve), [[0, 2048 / 4095, 1]])


def test_to_float01_uint8():
  out = image_io.to_float01(np.array([[0, 255]], np.uint8))
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, [[0.0, 1.0]])


def test_32bit_int_and_float_images():
  ints = Image.fromarray(np.array([[0, 1000, 60000]], np.int32), 'I')
  out = image_io.decode_grayscale(_encode(ints, 'TIFF'), 'i.tif')
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, [[0, 1000, 60000]])
  floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), 'F')
  out = image_io.decode_grayscale(_encode(floats, 'TIFF'), 'f.tif')
  np.testing.assert_array_equal(out, [[0, 32768, 65535]])


def test_cmyk_jpeg(tmp_path):
  image = Image.new('CMYK', (32, 40), (0, 0, 0, 100))
  path = _write(tmp_path, 'cmyk.jpg', _encode(image, 'JPEG'))
  out = image_io.read_grayscale(path)
  assert out.shape == (40, 32) and out.dtype == np.uint8
  assert out.std() < 2  # A flat grey.


def test_palette_and_bilevel_and_bmp(tmp_path):
  gray = _gradient()
  palette = Image.fromarray(gray).convert('P')
  out = image_io.read_grayscale(
      _write(tmp_path, 'p.png', _encode(palette, 'PNG')))
  assert out.shape == (40, 32) and out.dtype == np.uint8
  bilevel = Image.fromarray(gray).convert('1')
  out = image_io.decode_grayscale(_encode(bilevel, 'BMP'), 'b.bmp')
  assert set(np.unique(out)) <= {0, 255}


def test_truncated_jpeg_raises(tmp_path):
  noise = np.random.default_rng(0).integers(0, 256, (120, 160), np.uint8)
  data = _encode(Image.fromarray(noise), 'JPEG')
  for cut in (len(data) // 2, len(data) - 2):
    path = _write(tmp_path, 'cut.jpeg', data[:cut])
    with pytest.raises(image_io.ImageDecodeError, match='cut.jpeg'):
      image_io.read_grayscale(path)


def test_garbage_bytes_raise_with_name():
  with pytest.raises(image_io.ImageDecodeError, match='junk.png') as e:
    image_io.decode_grayscale(b'not an image at all', 'junk.png')
  assert '\n' not in str(e.value)
  assert isinstance(e.value, ValueError)


def test_missing_file():
  with pytest.raises(FileNotFoundError, match='nope.png'):
    image_io.read_grayscale('/nonexistent/nope.png')


def test_resize_square_centre_crops_and_antialiases():
  stripes = np.zeros((100, 200), np.uint8)
  stripes[:, ::2] = 255  # One-pixel stripes alias badly without a filter.
  stripes[:, :50] = 0  # Left and right quarters fall outside the crop.
  out = image_io.resize_square(stripes, 25)
  assert out.shape == (25, 25) and out.dtype == np.uint8
  assert abs(float(out[:, 2:-2].mean()) - 127.5) < 10
  assert out[:, 2:-2].std() < 10
  same = image_io.resize_square(_gradient(32, 32), 32)
  np.testing.assert_array_equal(same, _gradient(32, 32))
  with pytest.raises(ValueError, match='to_uint8'):
    image_io.resize_square(np.zeros((4, 4), np.uint16), 2)


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
def test_encode_png_round_trips(dtype):
  img = _gradient().astype(dtype)
  if dtype == np.uint16:
    img *= 257  # Use the full 16-bit range.
  data = image_io.encode_png(img[..., None])
  np.testing.assert_array_equal(image_io.decode_grayscale(data, 'x.png'), img)
  with pytest.raises(ValueError, match='encode_png'):
    image_io.encode_png(np.zeros((2, 2, 3), np.uint8))
