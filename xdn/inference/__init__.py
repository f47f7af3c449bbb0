"""Denoising with a trained model: the denoiser, its strength levels, tiling,
size buckets, self-supervised adaptation, output files and the folder loop.

The public face (what the README and the model card show):

  denoiser = xdn.inference.load_pretrained()
  clean = xdn.inference.denoise_image(denoiser, noisy)

Where each rule lives:

  denoiser.py      `Denoiser` (frozen) and its loaders
  told.py          what a model is told of the noise: given, or estimated
  strength.py      strength levels and factors
  precision.py     float32, bfloat16 or 'auto'
  compiled.py      the model as jitted programs; batched calls
  ensemble.py      the x8 self-ensemble
  tiling.py        `denoise_image`: whole, in a size bucket, or in tiles
  size_buckets.py  one compiled program for many image sizes
  adaptation.py    fine-tuning on the noisy inputs themselves
  outputs.py       output names, files and descriptions
  folder.py        files and folders: the loop behind xdn-denoise
  export.py        a training run's model in the shipped model's format

Importing it loads neither TensorFlow nor the training code.
"""

from xdn.inference.denoiser import PRETRAINED
from xdn.inference.denoiser import Denoiser
from xdn.inference.denoiser import load
from xdn.inference.denoiser import load_denoiser
from xdn.inference.denoiser import load_pretrained
from xdn.inference.ensemble import dihedral
from xdn.inference.precision import PRECISIONS
from xdn.inference.tiling import denoise_image
from xdn.inference.tiling import denoise_tiled
from xdn.inference.tiling import MAX_WHOLE_PIXELS
from xdn.inference.told import parse_noise

__all__ = ['Denoiser', 'MAX_WHOLE_PIXELS', 'PRECISIONS', 'PRETRAINED', 'denoise_image',
           'denoise_tiled', 'dihedral', 'load', 'load_denoiser',
           'load_pretrained', 'parse_noise']
