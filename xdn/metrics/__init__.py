"""Measurements of images: PSNR/SSIM (`similarity`), image quality (NPS,
TTF: `image_quality`), inserted lesions (`lesions`) and task-based model
observers (`observers`). Pure functions; no other xdn package below them.
"""

from xdn.metrics.similarity import psnr
from xdn.metrics.similarity import ssim

__all__ = ['psnr', 'ssim']
