"""Denoising with a trained model: the denoiser, its strength levels, tiling,
size buckets, self-supervised adaptation, output files and the folder loop.

The public face (what the README and the model card show):

  denoiser = xdn.inference.load_pretrained()
  clean = xdn.inference.denoise_image(denoiser, noisy)

Importing it loads neither TensorFlow nor the training code.
"""

from xdn.inference.denoiser import Denoiser
from xdn.inference.denoiser import PRECISIONS
from xdn.inference.denoiser import denoise_image
from xdn.inference.denoiser import denoise_tiled
from xdn.inference.denoiser import dihedral
from xdn.inference.denoiser import load
from xdn.inference.denoiser import load_denoiser
from xdn.inference.denoiser import load_pretrained

__all__ = ['Denoiser', 'PRECISIONS', 'denoise_image', 'denoise_tiled',
           'dihedral', 'load', 'load_denoiser', 'load_pretrained']
