"""Shared by the xdn-beam tests: a small mixed archive, running a module
in a fresh process, and the outputs of a run."""

import os
import pathlib
import subprocess
import sys

import numpy as np
from pydicom import uid

from tests import dicom_fixtures as df
from xdn.io import atomic
from xdn.io import images as image_io

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIDE_FILES = ('xdn_results.csv', 'xdn_failed.txt')


def noisy(h: int, w: int, top: int, seed: int) -> np.ndarray:
  """A ramp with Gaussian noise, rounded to integers up to `top`."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  clean = 0.25 + 0.5 * (xx + yy) / (h + w)
  return np.round(np.clip(clean + rng.normal(0, 0.05, (h, w)), 0, 1) * top)


def make_archive(folder: pathlib.Path, twins: bool = True) -> pathlib.Path:
  """PNG 8 and 16 bit, 12-bit DICOM, a subfolder, a corrupt file and (with
  `twins`) two inputs that would share one output name."""
  (folder / 'sub').mkdir(parents=True, exist_ok=True)
  (folder / 'a.png').write_bytes(image_io.encode_png(
      noisy(64, 80, 255, 0).astype(np.uint8)))
  (folder / 'sub' / 'b.png').write_bytes(image_io.encode_png(
      noisy(72, 64, 65535, 1).astype(np.uint16)))
  ds = df.dataset(noisy(64, 72, 4095, 2).astype(np.uint16), bits=12)
  (folder / 'sub' / 'c.dcm').write_bytes(
      df.encode(ds, uid.ExplicitVRLittleEndian))
  (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
  if twins:
    (folder / 'twin.png').write_bytes(image_io.encode_png(
        noisy(64, 64, 255, 3).astype(np.uint8)))
    (folder / 'twin.tif').write_bytes(image_io.encode_png(
        noisy(64, 64, 255, 4).astype(np.uint8)))
  return folder


def environment() -> dict:
  """This process's environment, with the checkout importable."""
  return dict(os.environ, PYTHONPATH=str(ROOT))


def run(args, cwd, timeout=300, **kwargs) -> subprocess.CompletedProcess:
  """`python ARGS` in a fresh process."""
  return subprocess.run([sys.executable, *args], cwd=str(cwd),
                        env=environment(), capture_output=True, text=True,
                        timeout=timeout, **kwargs)


def outputs(folder: pathlib.Path) -> dict:
  """Relative name -> bytes of every output (not side files, not temps)."""
  found = {}
  if not folder.exists():
    return found
  for path in folder.rglob('*'):
    name = str(path.relative_to(folder))
    if path.is_file() and name not in SIDE_FILES and not (
        atomic.is_temporary(name)):
      found[name] = path.read_bytes()
  return found


def temporaries(folder: pathlib.Path) -> list:
  """Files a killed write could have left (there must be none)."""
  return [str(p) for p in folder.rglob('*') if atomic.is_temporary(p.name)]
