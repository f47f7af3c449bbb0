"""The seed's convolutional VAE: noisy input, clean target, MC ELBO."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'vae'
  config.noise.kind = 'gaussian_medium'
  config.loss.elbo = 'monte_carlo'  # The seed's single-sample ELBO.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-4  # As the TF CVAE the seed follows.
  config.batch_size = 32
  return config
