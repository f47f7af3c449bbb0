"""The seed's autoencoder on the seed's medium Gaussian noise (64x64)."""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'autoencoder'
  config.noise.kind = 'gaussian_medium'  # sigma 22.8 on the 0-255 scale.
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 32
  # 800 steps (about 41 epochs of the embedded sample) finish in under 10
  # minutes on 2 CPU cores; BatchNorm's running statistics (Keras momentum
  # 0.99) need several hundred steps before evaluation is meaningful.
  config.num_train_steps = 800
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
