"""Self-supervised training on a folder of noisy radiographs: no clean image.

  python run.py --config=configs/self_supervised.py --workdir=runs/ss \
      --config.data.manual_dir=/my/scans
  python run.py --config=configs/self_supervised.py --workdir=runs/ss_n2s \
      --config.data.manual_dir=/my/scans --config.loss.name=noise2self
  # Fine-tune the model shipped in xdn on your scans:
  python run.py --config=configs/self_supervised.py --workdir=runs/ft \
      --config.init=pretrained --config.data.manual_dir=/my/scans

The folder's images are the inputs and the only targets (`noise.kind='none'`);
see xdn/self_supervised.py for the losses. Validation uses the held-out
patients' noisy images: the logged eval loss is the self-supervised loss
there (it tracks the error to the unseen clean image up to a constant) and
picks the best checkpoint. To measure against clean images, make a noisy
copy of a clean set (`xdn-noisy-copy`) and evaluate on the
clean set with `xdn-evaluate --config=...`.
"""

from xdn.configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  # The U-Net of configs/unet.py. With --config.init the model section is
  # that of the weights (xdn/warm_start.py).
  config.model = default.model_config('unet', base_width=32, depth=4)

  # Native resolution only: downscaling averages neighbouring pixels, which
  # correlates their noise, and every loss here assumes independent pixels.
  default.folder_data(config, native_fraction=1.0, max_downscale=1.0)

  config.noise.kind = 'none'  # The data are noisy already.
  config.noise.level = 0.0

  config.loss.name = 'neighbor2neighbor'  # Or 'noise2self', 'sure'.

  default.adam_cosine(config, warmup_steps=50)
  return default.unet_budget(config, arg)
