"""Fuzzed files through the per-file function of xdn-denoise and the readers.

Valid PNG (8 and 16 bit), JPEG, TIFF, BMP and DICOM files are made here and
mutated, seeded: truncation at random offsets, bit flips in headers and
data, zero length, wrong extensions, huge declared dimensions, and DICOM
headers with missing or contradictory Rows/Columns/BitsAllocated and more.
Each mutant must give an output of the input's shape and dtype or one clean
error line (a ValueError or OSError, one line, no object reprs), within a
per-file time limit, writing nothing outside --out. Crashes (any other
exception, or a hang) must be zero.
"""

import collections
import io
import os
import random
import re
import signal
import struct
import time
import warnings
import zlib

from absl import logging
import numpy as np
from PIL import Image
import pydicom
from pydicom import uid
import pytest

from tests import dicom_fixtures as df
from xdn.data.chest_xray import chest_xray_dataset_builder as chest_xray
from xdn.data import folder
from xdn.inference import folder as denoise
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io

SEED = 13
RANDOM_PER_SOURCE = 30
TIME_LIMIT_S = 10  # Per file; a small file takes milliseconds.
_REPR = re.compile(r'<[^<>]* at 0x[0-9a-fA-F]+>')


class IdentityDenoiser:
  fixed_size, name, step = None, 'identity', 0

  def __call__(self, images):
    return images


class Hang(BaseException):
  """Raised by the alarm: a BaseException, so no `except Exception` eats it."""


# ------------------------------------------------------------- the corpus


def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def sources() -> dict[str, bytes]:
  """Valid files, small so a few hundred mutants take seconds."""
  eight = df.gradient(48, 64, 255).astype(np.uint8)
  deep = df.gradient(48, 64, 4095, seed=1).astype(np.uint16)
  ct = (df.gradient(48, 64, 4095, seed=2) - 1024).astype(np.int16)
  files = {
      'png8.png': _encode(eight, 'PNG'),
      'png16.png': _encode(deep, 'PNG'),
      'photo.jpg': _encode(eight, 'JPEG', quality=90),
      'scan.tif': _encode(deep, 'TIFF'),
      'scan_lzw.tif': _encode(eight, 'TIFF', compression='tiff_lzw'),
      'film.bmp': _encode(eight, 'BMP'),
      'dx.dcm': df.encode(df.dataset(deep, bits=12, slope=2.0,
                                     intercept=-50.0),
                          uid.ExplicitVRLittleEndian),
      'ct_big_endian.dcm': df.encode(df.dataset(ct, bits=16,
                                                intercept=-1024.0),
                                     uid.ExplicitVRBigEndian),
      'cr_mono1_implicit.dcm': df.encode(
          df.dataset(eight, 'MONOCHROME1', bits=8),
          uid.ImplicitVRLittleEndian),
      'dx_rle.dcm': df.encode(df.dataset(deep, bits=12), uid.RLELossless),
  }
  try:  # Through a C decoder (GDCM), when python-gdcm is installed.
    files['dx_jpeg_lossless.dcm'] = df.encode(df.dataset(deep, bits=12),
                                              uid.JPEGLosslessSV1)
  except NotImplementedError:
    pass
  return files


def _header_end(name: str, data: bytes) -> int:
  """Where the pixel data starts (DICOM), or a guess at the header size."""
  if name.endswith('.dcm'):
    return pydicom.dcmread(io.BytesIO(data))['PixelData'].file_tell
  return min(64, len(data) // 4)


def _flip(data: bytes, rng: random.Random, lo: int, hi: int) -> bytes:
  out = bytearray(data)
  for _ in range(rng.randint(1, 8)):
    position = rng.randrange(lo, max(hi, lo + 1))
    out[position] ^= 1 << rng.randrange(8)
  return bytes(out)


def _huge(name: str, data: bytes, size: int = 1_000_000) -> bytes | None:
  """The file declaring `size` x `size` pixels, its header otherwise valid."""
  out = bytearray(data)
  if name.endswith('.png'):
    out[16:24] = struct.pack('>II', size, size)
    out[29:33] = struct.pack('>I', zlib.crc32(bytes(out[12:29])))
  elif name.endswith('.jpg'):
    sof = data.find(b'\xff\xc0')
    out[sof + 5:sof + 9] = struct.pack('>HH', 65500, 65500)
  elif name.endswith('.bmp'):
    out[18:26] = struct.pack('<ii', size, size)
  elif name.endswith('.tif'):
    ifd, = struct.unpack('<I', data[4:8])
    count, = struct.unpack('<H', data[ifd:ifd + 2])
    for i in range(count):
      entry = ifd + 2 + 12 * i
      tag, kind = struct.unpack('<HH', data[entry:entry + 4])
      if tag in (256, 257):  # ImageWidth, ImageLength.
        value = struct.pack('<H', 65535) + b'\0\0' if kind == 3 else (
            struct.pack('<I', size))
        out[entry + 8:entry + 12] = value
  else:
    return None
  return bytes(out)


def _dicom_variants() -> dict[str, tuple[bytes, bytes]]:
  """Header mutations at the element level, re-encoded validly.

  Each as a DICOM file (preamble, 'DICM', meta) and as a bare data set.
  """
  pixels = df.gradient(40, 30, 4095).astype(np.uint16)

  def variant(syntax=uid.ExplicitVRLittleEndian, meta=None, slope=b'',
              **elements):
    ds = df.dataset(pixels, bits=12, slope=1.2345)
    for keyword, value in elements.items():
      if value is None:
        del ds[keyword]
      else:
        setattr(ds, keyword, value)
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword, value in (meta or {}).items():
      setattr(ds.file_meta, keyword, value)
    # Meta and body encoded apart: the declared syntax may lie about the
    # body, which is always Explicit VR Little Endian.
    header = pydicom.filebase.DicomBytesIO()
    pydicom.filewriter.write_file_meta_info(header, ds.file_meta,
                                            enforce_standard=False)
    del ds.file_meta
    body = io.BytesIO()
    pydicom.dcmwrite(body, ds, implicit_vr=False, little_endian=True)
    # pydicom refuses to set invalid values: edit the encoded bytes.
    body = body.getvalue().replace(b'1.2345', slope) if slope else (
        body.getvalue())
    return b'\0' * 128 + b'DICM' + header.getvalue() + body, body

  return {
      'no_rows': variant(Rows=None),
      'no_columns': variant(Columns=None),
      'no_bits_allocated': variant(BitsAllocated=None),
      'no_bits_stored': variant(BitsStored=None),
      'rows_too_many': variant(Rows=41),
      'rows_too_few': variant(Rows=20),  # Data longer than declared.
      'columns_huge': variant(Columns=65535),
      'rows_zero': variant(Rows=0),
      'bits_allocated_8': variant(BitsAllocated=8),
      'bits_allocated_12': variant(BitsAllocated=12),
      'bits_allocated_32': variant(BitsAllocated=32),
      'bits_stored_17': variant(BitsStored=17),
      'bits_stored_0': variant(BitsStored=0),
      'high_bit_wrong': variant(HighBit=3),
      'samples_3': variant(SamplesPerPixel=3),
      'ybr': variant(PhotometricInterpretation='YBR_FULL'),
      'no_photometric': variant(PhotometricInterpretation=None),
      'frames_2': variant(NumberOfFrames=2),
      'pixel_representation_7': variant(PixelRepresentation=7),
      'slope_zero': variant(RescaleSlope=0),
      'slope_text': variant(slope=b'abc   '),
      'slope_nan': variant(slope=b'nan   '),
      'slope_inf': variant(slope=b'-inf  '),
      'no_pixel_data': variant(PixelData=None),
      'syntax_jpeg_but_native': variant(
          meta={'TransferSyntaxUID': uid.JPEGLosslessSV1}),
      'syntax_big_endian_but_little': variant(
          meta={'TransferSyntaxUID': uid.ExplicitVRBigEndian}),
      'syntax_unknown': variant(meta={'TransferSyntaxUID': '1.2.3.4'}),
      'syntax_garbage': variant(meta={'TransferSyntaxUID': 'x' * 20}),
      'dicomdir_class': variant(SOPClassUID=uid.MediaStorageDirectoryStorage),
  }


def mutants(seed: int = SEED) -> list[tuple[str, bytes, str]]:
  """(file name, contents, kind of mutation); valid sources first."""
  rng = random.Random(seed)
  out = [(name, data, 'valid') for name, data in sources().items()]
  extensions = ['.png', '.jpg', '.tif', '.bmp', '.dcm', '']
  for name, data in sources().items():
    stem, ext = os.path.splitext(name)
    header = _header_end(name, data)
    out.append((f'{stem}_empty{ext}', b'', 'empty'))
    huge = _huge(name, data)
    if huge is not None:
      out.append((f'{stem}_huge{ext}', huge, 'huge'))
    wrong = rng.choice([e for e in extensions if e != ext])
    out.append((f'{stem}_wrong_ext{wrong}', data, 'wrong_extension'))
    for i in range(RANDOM_PER_SOURCE):
      kind = ('truncated', 'flip_header', 'flip_data', 'flip_any')[i % 4]
      if kind == 'truncated':
        mutant = data[:rng.randrange(len(data))]
      elif kind == 'flip_header':
        mutant = _flip(data, rng, 0, header)
      elif kind == 'flip_data':
        mutant = _flip(data, rng, header, len(data))
      else:
        mutant = _flip(data, rng, 0, len(data))
      out.append((f'{stem}_{kind}_{i}{ext}', mutant, kind))
  for name, (data, bare) in _dicom_variants().items():
    out.append((f'header_{name}.dcm', data, 'dicom_header'))
    # The same without preamble and meta, read through pydicom's force=True.
    out.append((f'bare_{name}.dcm', bare, 'dicom_bare'))
  return out


# ------------------------------------------------------------------ checks


def _run_limited(fn, *args, **kwargs):
  """fn(*args, **kwargs), interrupted by Hang after TIME_LIMIT_S."""

  def alarm(signum, frame):
    del signum, frame
    raise Hang()

  previous = signal.signal(signal.SIGALRM, alarm)
  signal.alarm(TIME_LIMIT_S)
  try:
    return fn(*args, **kwargs)
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _clean_line(error: BaseException) -> bool:
  """A refusal as the user sees it: worded, one line, no object reprs."""
  text = str(error)
  return (isinstance(error, (ValueError, OSError)) and bool(text.strip()) and
          '\n' not in text and not _REPR.search(text) and
          'Traceback' not in text)


def _decoded(path: str) -> np.ndarray:
  """An output file's pixels as stored (PNG or DICOM)."""
  if path.endswith('.dcm'):
    return pydicom.dcmread(path).pixel_array
  return image_io.read_grayscale(path)


def _input_pixels(path: str) -> np.ndarray:
  """An input's stored pixels, as its output should hold them."""
  radiograph = radiograph_io.read_radiograph(path)
  if radiograph.extension == '.dcm':
    ds = pydicom.dcmread(path, force=True)
    if 'TransferSyntaxUID' not in ds.file_meta:  # A bare data set.
      implicit, little = ds.original_encoding
      ds.file_meta.TransferSyntaxUID = (
          uid.ImplicitVRLittleEndian if implicit else
          uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
    raw = ds.pixel_array
    return raw.astype(raw.dtype.newbyteorder('='))
  return image_io.read_grayscale(path)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  radiograph_io.quiet_pydicom_logs()  # As xdn-denoise and training do.
  root = tmp_path_factory.mktemp('fuzz')
  (root / 'in').mkdir()
  cases = mutants()
  for name, data, _ in cases:
    (root / 'in' / name).write_bytes(data)
  return root, cases


def test_mutants_are_written_or_refused_in_one_line(corpus):
  root, cases = corpus
  out = root / 'out'
  outside_before = sorted(p for p in root.rglob('*')
                          if 'out' not in p.relative_to(root).parts)
  inputs = {os.path.realpath(root / 'in' / n) for n, _, _ in cases}
  tally = collections.Counter()
  crashes, slowest = [], (0.0, '')
  start = time.time()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # pydicom warns about odd headers.
    for name, data, kind in cases:
      path = str(root / 'in' / name)
      begin = time.time()
      try:
        target, shape = _run_limited(
            denoise.denoise_one_file, IdentityDenoiser(), path, name,
            str(out), overwrite=True, inputs=inputs)
      except Hang:
        crashes.append(f'{name}: hang (over {TIME_LIMIT_S} s)')
        tally['crashed'] += 1
        continue
      except Exception as e:  # pylint: disable=broad-except  # Classified.
        if _clean_line(e):
          tally['refused'] += 1
          assert kind != 'valid', f'valid file {name} refused: {e}'
        else:
          tally['crashed'] += 1
          crashes.append(f'{name}: {type(e).__name__}: {e!r}'[:300])
        continue
      finally:
        slowest = max(slowest, (time.time() - begin, name))
      tally['written'] += 1
      # Same shape and dtype as the input, and the identity model gives back
      # the stored values.
      written = _decoded(target)
      expected = _input_pixels(path)
      assert written.shape == expected.shape == shape, name
      assert written.dtype == expected.dtype, name
      np.testing.assert_array_equal(written, expected, err_msg=name)
  elapsed = time.time() - start
  logging.info('fuzz: %d mutants (incl. %d valid): %s; %.1f s, slowest %s '
               '%.2f s', len(cases), sum(k == 'valid' for *_, k in cases),
               dict(tally), elapsed, slowest[1], slowest[0])
  print(f'\nfuzz figures: tried={len(cases)} {dict(tally)}')
  assert not crashes, '\n'.join(crashes)
  assert tally['written'] + tally['refused'] == len(cases)
  assert len(cases) >= 300
  # Both outcomes are exercised, so the classification is not vacuous.
  assert tally['written'] > 50 and tally['refused'] > 100
  # Nothing written outside --out, no temporary files left in it.
  outside_after = sorted(p for p in root.rglob('*')
                         if 'out' not in p.relative_to(root).parts)
  assert outside_after == outside_before
  assert not [p for p in out.rglob('*.tmp')]


def test_batch_survives_mutants_and_writes_the_valid_files(corpus, caplog):
  """The whole loop: one error line per refused file, valid files written."""
  root, cases = corpus
  out = root / 'batch_out'
  with warnings.catch_warnings(), caplog.at_level('ERROR'):
    warnings.simplefilter('ignore')
    failed = denoise.denoise_files(IdentityDenoiser(), [str(root / 'in')],
                                   str(out))
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert len(errors) == failed > 0
  assert all('\n' not in e and not _REPR.search(e) for e in errors)
  for name, _, kind in cases:
    if kind == 'valid':
      stem = os.path.splitext(name)[0]
      assert any(p.startswith(stem + '.') for p in os.listdir(out)), name


# --------------------------------------------------- the same in training


def test_folder_source_skips_and_counts_or_stops_naming_the_file(
    tmp_path, corpus):
  _, cases = corpus
  data_dir = tmp_path / 'radiographs'
  data_dir.mkdir()
  # Every tenth mutant plus the valid files keeps the load quick.
  chosen = [c for i, c in enumerate(cases) if c[2] == 'valid' or i % 10 == 0]
  for name, data, _ in chosen:
    (data_dir / name).write_bytes(data)
  readable = set()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    for name in os.listdir(data_dir):
      try:
        radiograph_io.read_radiograph(str(data_dir / name))
        readable.add(name)
      except (ValueError, OSError):
        pass
    listed = folder.list_files(str(data_dir))
    assert set(listed) - readable  # Some mutants are unreadable.
    images = folder.FolderImages(str(data_dir), 'train', '1,0,0',
                                 skip_corrupt=True)
    assert sorted(images.files) == sorted(set(listed) & readable)
    assert sorted(images.skipped) == sorted(set(listed) - readable)
    with pytest.raises(ValueError, match='skip_corrupt') as e:
      folder.FolderImages(str(data_dir), 'train', '1,0,0')
  message = str(e.value)
  assert '\n' not in message and not _REPR.search(message)
  assert any(name in message for name in set(listed) - readable)


def test_chest_xray_decoding_survives_image_mutants(corpus):
  """The Kaggle builder's per-image step: PNG bytes or the decode error."""
  _, cases = corpus
  outcomes = collections.Counter()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    for name, data, kind in cases:
      if name.endswith('.dcm'):
        continue
      result = chest_xray._to_png(data, name, 32)
      if isinstance(result, image_io.ImageDecodeError):
        assert kind != 'valid' and _clean_line(result), (name, result)
        outcomes['refused'] += 1
      else:
        assert isinstance(result, bytes), (name, result)
        assert image_io.decode_grayscale(result, name).shape == (32, 32)
        outcomes['written'] += 1
  assert outcomes['refused'] > 50 and outcomes['written'] > 20
