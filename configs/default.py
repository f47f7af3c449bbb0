"""Default configuration: every field xdn knows, with its default.

Other config files start from `get_config()` here and override a few fields.
Any field can be overridden on the command line, e.g.
`python run.py --config=configs/unet.py --config.batch_size=64`.
"""

import ml_collections

from xdn import models
from xdn.noise import synthetic as xdn_noise


def model_config(name: str, **fields) -> ml_collections.ConfigDict:
  """`config.model` for model `name`: its own fields with their defaults
  (the fields of its Flax module, see xdn.models.REGISTRY), `name`, the
  compute `dtype` ('float32' or 'bfloat16') and `conv_impl` ('auto': xdn's
  CPU-fast convolutions on CPU, XLA's elsewhere; or 'fast' / 'xla')."""
  return models.model_config(name, **fields)


def folder_data(config: ml_collections.ConfigDict, *,
                native_fraction: float,
                max_downscale: float) -> ml_collections.ConfigDict:
  """Training on random 64x64 patches of a folder of radiographs.

  The folder is required: --config.data.manual_dir=FOLDER. Unreadable files
  are skipped with a warning and counted.
  """
  data = config.data
  data.name = 'folder'
  data.manual_dir = ''
  data.image_size = 64
  data.random_crop = data.flip = data.rot90 = True
  data.native_fraction = native_fraction
  data.max_downscale = max_downscale
  data.skip_corrupt = True
  return config


def adam_cosine(config: ml_collections.ConfigDict,
                warmup_steps: int) -> ml_collections.ConfigDict:
  """Adam at 1e-3 with warm-up and cosine decay, batch 32 (the U-Nets')."""
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = warmup_steps
  config.batch_size = 32
  return config


def unet_budget(config: ml_collections.ConfigDict,
                arg: str) -> ml_collections.ConfigDict:
  """The U-Nets' training length: 20,000 steps (an accelerator's job); the
  ':quick' variant trains width 16 for 800 steps (minutes on a CPU)."""
  config.num_train_steps = 20000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  if arg == 'quick':
    config.model.base_width = 16
  return variant(config, arg)


def quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The CPU-minutes variant of a config (`--config=configs/X.py:quick`).

  800 steps (about 41 epochs of the embedded sample) finish in under 10
  minutes on 2 CPU cores; evaluation and checkpoints every 200 steps.
  """
  config.num_train_steps = 800
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config


def variant(config: ml_collections.ConfigDict,
            name: str) -> ml_collections.ConfigDict:
  """Applies the variant named after ':' in --config ('' or 'quick')."""
  if not name:
    return config
  if name == 'quick':
    return quick(config)
  raise ValueError(f'unknown config variant {name!r}; use '
                   '--config=configs/X.py or --config=configs/X.py:quick')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # ---------------------------------------------------------------- data
  config.data = data = ml_collections.ConfigDict()
  # A TFDS name: 'chest_xray_sample' is the embedded set of 800 real 64x64 NIH
  # radiographs (no download); 'chest_xray/64', 'chest_xray/128',
  # 'chest_xray/256' or 'chest_xray/full' is the Kaggle set (needs manual_dir).
  # 'folder' is any folder of radiographs (PNG/JPEG/TIFF/DICOM, any size),
  # given as manual_dir; see xdn.data.folder.
  data.name = 'chest_xray_sample'
  data.data_dir = ''  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets).
  data.manual_dir = ''  # Kaggle zip or extracted folder, or the 'folder'.
  # 'folder': fractions of patients in train, validation, test.
  data.split_fractions = '0.8,0.1,0.1'
  # 'folder': scale augmentation. A patch is taken at native resolution with
  # probability native_fraction, else from the image downscaled by a factor
  # drawn log-uniformly from [1, max_downscale] (1: never downscaled).
  data.native_fraction = 0.5
  data.max_downscale = 1.0
  # Building chest_xray/*: skip unreadable images with a warning (default:
  # stop and name the file).
  data.skip_corrupt = False
  data.train_split = 'train'
  data.eval_split = 'validation'  # Used during training and to pick the best checkpoint.
  data.test_split = 'test'  # Used by xdn.cli.evaluate for the final table.
  data.image_size = 64  # Training images are image_size x image_size.
  data.random_crop = False  # Random image_size crops (else a centre crop when larger).
  data.flip = False  # Random horizontal/vertical flips.
  data.rot90 = False  # Random multiples of 90 degree rotations.
  data.num_eval_images = 0  # Cap on eval images (0: the whole eval split).
  data.prefetch = 2  # Batches prepared ahead of the accelerator.

  # --------------------------------------------------------------- model
  # Only the chosen model's own fields (see xdn.models.REGISTRY) plus name,
  # dtype and conv_impl; each model's config file sets its fields.
  config.model = model_config('autoencoder')

  # --------------------------------------------------------------- noise
  config.noise = noise = ml_collections.ConfigDict()
  # See xdn.noise.synthetic.NOISE_KINDS: 'gaussian', 'poisson', 'poisson_gaussian',
  # 'salt_and_pepper', 'speckle'; or a preset such as 'gaussian_medium'.
  noise.kind = 'gaussian'
  # Level in the kind's units (gaussian: sigma on the 0-255 scale; poisson:
  # photons per unit intensity; salt_and_pepper: fraction of pixels; speckle:
  # std of the multiplicative factor). Ignored when a preset is given.
  noise.level = 25.0
  # Blind training: when max_level > min_level, each image draws its own level
  # uniformly from [min_level, max_level] and `level` is used for evaluation.
  noise.min_level = 0.0
  noise.max_level = 0.0
  noise.read_noise = xdn_noise.DEFAULT_READ_NOISE  # poisson_gaussian: detector read-noise sigma (0-255 scale).
  # Training only: a comma-separated list of kinds, one drawn per image
  # ('' = noise.kind). Gaussian kinds draw sigma from [min_level,
  # max_level]; Poisson kinds the dose log-uniformly from [min_dose,
  # max_dose] (when max_dose > 0) and poisson_gaussian its read noise from
  # [0, max_read_noise] (when > 0).
  noise.train_kinds = ''
  noise.min_dose = 0.0
  noise.max_dose = 0.0
  noise.max_read_noise = 0.0
  noise.clip = True  # Clip noisy images to [0, 1], as a detector saturates.
  # Correlated kinds ('correlated_gaussian', 'xray'; xdn.noise.physics): the
  # noise's neighbour correlation (0 = white) for evaluation, and the range
  # training draws it from (when max_correlation > 0).
  noise.correlation = 0.0
  noise.min_correlation = 0.0
  noise.max_correlation = 0.0
  # 'xray': electronic noise std in counts; training draws its dose (quanta
  # per pixel unattenuated) log-uniformly from [min_xray_dose,
  # max_xray_dose] when max_xray_dose > 0 (else from the Poisson range).
  noise.electronic_noise = xdn_noise.noise_physics.DEFAULT_ELECTRONIC_NOISE
  noise.min_xray_dose = 0.0
  noise.max_xray_dose = 0.0
  # 'xray', noise-map models: the share of images told the X-ray variance
  # law itself (exponential in intensity, xdn.noise.synthetic.noise_std_map) instead
  # of its closest line; evaluation tells it when > 0.
  noise.xray_law_fraction = 0.0

  # ------------------------------------------------------------- lesions
  # Training only: insert faint synthetic lesions (xdn.metrics.lesions) into this
  # fraction of the clean training images, so the model learns to keep
  # them; the target holds the lesion too.
  config.lesions = lesions = ml_collections.ConfigDict()
  lesions.rate = 0.0
  lesions.min_contrast = 0.005  # Peak contrast, fraction of the [0, 1] range.
  lesions.max_contrast = 0.05
  lesions.min_size = 1.0  # Gaussian profile std in pixels (log-uniform).
  lesions.max_size = 6.0
  lesions.positive_fraction = 0.75  # Brighter than the background (nodules).

  # ------------------------------------------------------------ fidelity
  # Noise-map models (xdn.losses.fidelity): half of each batch are lesion
  # twins of the other half under the same noise, every pair is told a
  # strength s (1 with probability full_fraction, else uniform in
  # [min_strength, 1)), and below s = 1 the loss adds `weight` x the lesion
  # transfer error and `texture_weight` x the residual's NPS-shape error,
  # both times the noise variance and ((1 - s) / (1 - min_strength))^p,
  # p = strength_power. Off while both weights are 0. A model with
  # model.strength_map is told s in that map, else as a scale on its noise
  # maps.
  config.fidelity = fidelity = ml_collections.ConfigDict()
  fidelity.weight = 0.0
  fidelity.texture_weight = 0.0
  fidelity.min_strength = 0.5
  fidelity.strength_power = 2.0
  fidelity.full_fraction = 0.5
  fidelity.min_size = 1.5  # Lesion Gaussian std in pixels (log-uniform).
  fidelity.max_size = 8.0
  fidelity.min_d_prime = 1.0  # Contrast for this input NPW d' (log-uniform).
  fidelity.max_d_prime = 4.0

  # ---------------------------------------------------------------- loss
  config.loss = loss = ml_collections.ConfigDict()
  # 'mse' or 'l1' (ignored by the VAE, which uses its ELBO); or one that
  # needs no clean image (xdn.losses.self_supervised): 'noise2self' (blind-spot,
  # Noise2Void/N2V2), 'neighbor2neighbor' or 'sure' (Gaussian, known sigma).
  loss.name = 'mse'
  loss.elbo = 'monte_carlo'  # vae: 'monte_carlo' (the seed's) or 'analytic' KL.
  loss.beta = 1.0  # vae: weight of the KL term.
  # noise2self: fraction of pixels masked, one per s x s cell with
  # s = round(1 / sqrt(mask_density)) (0.0625: 4x4 cells); the side (odd) of
  # the box replacements come from; the replacement: 'median' of the box
  # without the pixel (N2V2: no checkerboard artefacts), 'random' neighbour
  # (N2V) or 'mean' of the neighbours (Noise2Self).
  loss.mask_density = 0.0625
  loss.mask_box = 5
  loss.mask_replace = 'median'
  # neighbor2neighbor: weight of the regulariser, and whether it ramps up
  # linearly from 0 over training (as the authors' code).
  loss.ne2ne_gamma = 2.0
  loss.ne2ne_gamma_ramp = True
  # noise2self / neighbor2neighbor under correlated noise
  # (xdn.models.pixel_shuffle): train on stride x stride pixel-shuffled sub-images
  # (0: off; -1: the smallest stride that leaves a neighbour correlation
  # under 0.1, from the noise's correlation), and apply the model at
  # pd_inference_stride (AP-BSN: 5 in training, 2 at inference).
  loss.pd_stride = 0
  loss.pd_inference_stride = 2
  # sure: step of the Monte-Carlo divergence probe (on the [0, 1] scale).
  loss.sure_epsilon = 1e-3
  # Self-supervised: the training images' Gaussian noise sigma (0-255), if
  # known. Needed by 'sure' unless the step adds Gaussian noise; gives the
  # noise map of noise_map models (0: estimated from each image).
  loss.noise_sigma = 0.0

  # ----------------------------------------------------------- optimizer
  config.optimizer = opt = ml_collections.ConfigDict()
  opt.name = 'adam'  # 'adam', 'adamw' or 'sgd'
  opt.learning_rate = 1e-3
  opt.schedule = 'constant'  # 'constant' or 'cosine'
  opt.warmup_steps = 0
  opt.weight_decay = 0.0  # adamw only
  opt.grad_clip_norm = 0.0  # 0: no clipping

  # ------------------------------------------------------------ training
  config.batch_size = 32  # Global batch, split across all devices.
  config.num_train_steps = 1500
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.num_sample_images = 8  # Rows in the noisy | denoised | clean grid.
  config.num_generated_images = 16  # vae: images from fixed random latents per eval.
  config.skip_nonfinite = False  # Skip updates with a NaN/Inf loss or gradient instead of stopping.
  # Initial weights: '' (random), 'pretrained' (the model shipped in xdn) or
  # a training workdir (its best checkpoint). The model section is taken
  # from that source. A checkpoint in --workdir (resuming) takes precedence.
  config.init = ''
  # ---------------------------------------------------------- multi-host
  config.distributed = False  # Call jax.distributed.initialize() (multi-host).
  # '' / -1: from the cluster environment (SLURM, TPU pods, or
  # JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
  config.coordinator_address = ''  # host:port of process 0, e.g. '10.0.0.1:1234'.
  config.num_processes = -1
  config.process_id = -1
  return variant(config, arg)
