"""Noise: synthetic corruption (`synthetic`), detector physics (`physics`),
estimation from an image (`estimation`), a scanner's texture (`texture`), the
noise report's measurements (`report`) and the one noise-spec grammar
(`spec`).

The synthetic-noise API is re-exported here, so `xdn.noise.add_noise(...)`
reads as before.
"""

from xdn.noise.synthetic import add_gaussian_noise
from xdn.noise.synthetic import add_noise
from xdn.noise.synthetic import add_poisson_gaussian_noise
from xdn.noise.synthetic import add_poisson_noise
from xdn.noise.synthetic import add_salt_and_pepper_noise
from xdn.noise.synthetic import add_speckle_noise
from xdn.noise.synthetic import AFFINE_KINDS
from xdn.noise.synthetic import CORRELATED_KINDS
from xdn.noise.synthetic import corrupt
from xdn.noise.synthetic import corrupt_with_params
from xdn.noise.synthetic import DEFAULT_READ_NOISE
from xdn.noise.synthetic import kind_variance_law
from xdn.noise.synthetic import noise_std_map
from xdn.noise.synthetic import with_noise_map

__all__ = ['AFFINE_KINDS', 'CORRELATED_KINDS', 'DEFAULT_READ_NOISE',
           'add_gaussian_noise', 'add_noise', 'add_poisson_gaussian_noise',
           'add_poisson_noise', 'add_salt_and_pepper_noise',
           'add_speckle_noise', 'corrupt', 'corrupt_with_params',
           'kind_variance_law', 'noise_std_map', 'with_noise_map']
