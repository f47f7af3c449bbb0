"""Where denoised files go and how they are written, for every front end.

`xdn-denoise` (one process) and `xdn-beam` (many workers) name, check and
write outputs with these functions, so both give the same files: the
input's relative name under the output folder, in the format and bit depth
`radiograph_io` chose, written atomically; and both describe a run with
`describe`, the words DICOM outputs carry (`xdn.io.dicom_derived`).
"""

import os
from typing import Any, Collection, Optional

import xdn
from xdn.io import atomic
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io
from xdn import models
from xdn.noise.estimation import NoiseEstimate


def output_path(out_dir: str, relative: str, extension: str) -> str:
  """`relative` (an input's name under its folder) under `out_dir`, with
  the output's `extension`."""
  return os.path.join(out_dir, os.path.splitext(relative)[0] + extension)


def claim_output(radiograph: radiograph_io.Radiograph, relative: str,
                 out_dir: str, *, overwrite: bool = False,
                 inputs: Collection[str] = frozenset(),
                 written: Collection[str] = frozenset()) -> str:
  """The output path of one decoded input, after every check that keeps a
  user's files safe: under `out_dir`, never an input (`inputs`, real
  paths) or another input's output (`written`), never an existing file
  without `overwrite`. Raises naming the file."""
  target = output_path(out_dir, relative, radiograph.extension)
  real, root = os.path.realpath(target), os.path.realpath(out_dir)
  if os.path.commonpath([real, root]) != root:
    raise ValueError(f'output {target!r} would be outside the output '
                     f'folder {out_dir!r}')
  if real in inputs:
    raise ValueError(f'output {target!r} would overwrite an input; '
                     'choose another output folder')
  if real in written:
    raise ValueError(f'output {target!r} was already written for another '
                     'input of the same name; denoise them separately')
  if os.path.exists(target) and not overwrite:
    raise FileExistsError(f'output {target!r} exists; allow overwriting to '
                          'replace it')
  return target


def write_output(radiograph: radiograph_io.Radiograph, denoised,
                 target: str) -> None:
  """Encodes and writes one output atomically: a crash never leaves half
  a file."""
  atomic.write_bytes(radiograph.to_file(denoised), target)


def describe(denoiser: Any, noise_level: Optional[NoiseEstimate] = None
             ) -> str:
  """What a run does, in words: 'denoised by xdn 0.1.0, model M step S,
  strength medium (s 0.78), noise told: estimated from each image'.

  DICOM outputs carry it (Derivation Description) and their new UIDs are
  derived from it, so it names only what is the same for every image of a
  run: `noise_level` is the noise the user gave (None: estimated).
  """
  text = (f'denoised by xdn {xdn.__version__}, model '
          f'{getattr(denoiser, "name", "model")} step '
          f'{getattr(denoiser, "step", "?")}')
  if models.capabilities_of(denoiser).takes_noise_map:
    told = (noise_level.describe() if noise_level is not None else
            'estimated from each image')
    text += f', strength {denoiser.strength_label}, noise told: {told}'
  return text


def failure_message(error: BaseException, hint: str = '') -> str:
  """What went wrong with a file, in words: its error's message, and for
  an error that is not a bad file (ValueError, OSError) but a bug, a note
  saying so, with `hint` (how to see more) before the request to report."""
  message = image_io.clean_message(error) or type(error).__name__
  if not isinstance(error, (ValueError, OSError)):
    message = (f'failed with an unexpected {type(error).__name__}: {message} '
               f'({hint}please report it)')
  return message
