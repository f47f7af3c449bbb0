"""The residual U-Net, trained blind on Gaussian noise sigma in [0, 55].

The full model (width 32) trains for 20,000 steps: an accelerator's job.
`--config=configs/unet.py:quick` is the CPU-minutes variant (width 16, 800
steps, under 10 minutes on 2 cores). With the Kaggle download:
  python run.py --config=configs/unet.py --config.data.name=chest_xray/full \
      --config.data.manual_dir=/path/to/archive.zip --config.data.image_size=256 \
      --config.data.train_split=train_main --config.data.eval_split=validation
The denoiser shipped inside xdn is configs/pretrained.py.
"""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  config.model = default.model_config('unet', base_width=32, depth=4)
  config.noise.kind = 'gaussian'
  config.noise.level = 25.0  # Evaluation level; training is blind:
  config.noise.min_level = 0.0
  config.noise.max_level = 55.0
  config.data.flip = True
  config.data.rot90 = True
  config.data.random_crop = True
  default.adam_cosine(config, warmup_steps=50)
  return default.unet_budget(config, arg)
