"""The seed's autoencoder with skip connections (ResidualAutoencoder_V2_64)."""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  config.model = default.model_config('seed_skip')
  config.noise.kind = 'gaussian_medium'
  config.loss.name = 'mse'
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-4
  config.batch_size = 32
  return default.variant(config, arg)
