"""The model shipped inside xdn (`xdn.inference.denoiser.load_pretrained()`).

A bias-free residual U-Net with a noise-level map input (DRUNet-style),
trained blind over Gaussian sigma 0-55 and Poisson-Gaussian noise on random
64x64 patches of full-resolution radiographs, half of them from the image
downscaled by up to 16x (so 1024x1024 radiographs also give thumbnails):

  python run.py --config=configs/pretrained.py --workdir=runs/pretrained \
      --config.data.manual_dir=/path/to/nih1024/images

The folder is split by patient (80/10/10); `xdn-evaluate --folder` uses the
same split for its held-out test images. See xdn/pretrained/MODEL_CARD.md.
"""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  # Width 16: a 2048x2048 radiograph is denoised in seconds on 2 CPU cores.
  config.model = default.model_config(
      'unet', depth=4, base_width=16, norm='none', use_bias=False,
      noise_map=True)

  # Half the patches at native resolution, half from the image shrunk by
  # 1-16x (a 1024x1024 radiograph shrunk 16x is a 64x64 thumbnail).
  default.folder_data(config, native_fraction=0.5, max_downscale=16.0)

  # Evaluation at Gaussian sigma 25; training draws per image: Gaussian
  # (twice as often) with sigma in [0, 55], or Poisson-Gaussian with a dose
  # of 20-2000 photons at full intensity and read noise sigma 0-5.
  config.noise.kind = 'gaussian'
  config.noise.level = 25.0
  config.noise.train_kinds = 'gaussian,gaussian,poisson_gaussian'
  config.noise.min_level = 0.0
  config.noise.max_level = 55.0
  config.noise.min_dose = 20.0
  config.noise.max_dose = 2000.0
  config.noise.max_read_noise = 5.0

  config.loss.name = 'mse'
  default.adam_cosine(config, warmup_steps=200)
  config.num_train_steps = 10000
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 250
  config.skip_nonfinite = True
  return default.variant(config, arg)
