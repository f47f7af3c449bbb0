"""Convolution layers shared by every model.

All models build their convolutions from here, so a faster formulation of a
layer (see issue on CPU training speed) changes every model at once. Each
layer keeps exactly the parameters (names and shapes) of its `flax.linen`
counterpart, so checkpoints and parameter counts do not depend on it.
"""

import flax.linen as nn

Conv = nn.Conv
ConvTranspose = nn.ConvTranspose
