"""The seed's convolutional VAE: noisy input, clean target, MC ELBO."""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  config.model = default.model_config('vae')
  config.noise.kind = 'gaussian_medium'
  config.loss.elbo = 'monte_carlo'  # The seed's single-sample ELBO.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-4  # As the TF CVAE the seed follows.
  config.batch_size = 32
  # The seed trained for minutes: 800 steps (about 41 epochs of the
  # embedded sample). BatchNorm's running statistics (Keras momentum 0.99)
  # need several hundred steps before evaluation is meaningful.
  default.quick(config)
  return default.variant(config, arg)
