"""The residual U-Net, trained blind on Gaussian noise sigma in [0, 55].

Defaults train on the embedded 64x64 sample. With the Kaggle download:
  python run.py --config=configs/unet.py --config.data.name=chest_xray/full \
      --config.data.manual_dir=/path/to/archive.zip --config.data.image_size=256 \
      --config.data.train_split=train_main --config.data.eval_split=validation
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'unet'
  # Width 16 keeps the default run under 10 minutes on 2 CPU cores (800
  # steps); on a GPU use the model's full width and train longer, e.g.
  # --config.model.base_width=32 --config.num_train_steps=20000.
  config.model.base_width = 16
  config.noise.kind = 'gaussian'
  config.noise.level = 25.0  # Evaluation level; training is blind:
  config.noise.min_level = 0.0
  config.noise.max_level = 55.0
  config.data.flip = True
  config.data.rot90 = True
  config.data.random_crop = True
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 50
  config.batch_size = 32
  config.num_train_steps = 800
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
