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
  # 800 steps (about 41 epochs of the embedded sample) finish in under 10
  # minutes on 2 CPU cores; BatchNorm's running statistics (Keras momentum
  # 0.99) need several hundred steps before evaluation is meaningful.
  config.num_train_steps = 800
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
