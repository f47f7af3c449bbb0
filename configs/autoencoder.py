"""The seed's autoencoder on the seed's medium Gaussian noise (64x64)."""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  config.model = default.model_config('autoencoder')
  config.noise.kind = 'gaussian_medium'  # sigma 22.8 on the 0-255 scale.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 32
  # The seed trained for minutes: 800 steps (about 41 epochs of the
  # embedded sample). BatchNorm's running statistics (Keras momentum 0.99)
  # need several hundred steps before evaluation is meaningful.
  default.quick(config)
  return default.variant(config, arg)
