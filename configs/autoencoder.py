"""The seed's autoencoder on the seed's medium Gaussian noise (64x64)."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'autoencoder'
  config.noise.kind = 'gaussian_medium'  # sigma 22.8 on the 0-255 scale.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 32
  return config
