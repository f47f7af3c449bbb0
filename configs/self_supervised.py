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
copy of a clean set (`python -m xdn.data.noisy_copy`) and evaluate on the
clean set with `xdn-evaluate --config=...`.
"""

from configs import default


def get_config(arg: str = ''):
  config = default.get_config()
  # The U-Net of configs/unet.py. With --config.init the model section is
  # that of the weights (xdn/warm_start.py).
  config.model = default.model_config('unet', base_width=32, depth=4)

  config.data.name = 'folder'
  config.data.manual_dir = ''  # Required: --config.data.manual_dir=FOLDER.
  config.data.image_size = 64
  config.data.random_crop = True
  config.data.flip = True
  config.data.rot90 = True
  # Native resolution only: downscaling averages neighbouring pixels, which
  # correlates their noise, and every loss here assumes independent pixels.
  config.data.native_fraction = 1.0
  config.data.max_downscale = 1.0
  config.data.skip_corrupt = True

  config.noise.kind = 'none'  # The data are noisy already.
  config.noise.level = 0.0

  config.loss.name = 'neighbor2neighbor'  # Or 'noise2self', 'sure'.

  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 50
  config.batch_size = 32
  # As configs/unet.py: 20,000 steps for an accelerator; ':quick' is the
  # CPU-minutes variant (width 16, 800 steps).
  config.num_train_steps = 20000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  if arg == 'quick':
    config.model.base_width = 16
  return default.variant(config, arg)
