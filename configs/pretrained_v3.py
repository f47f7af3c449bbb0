"""Model v3: v2 (configs/pretrained_v2.py) trained to keep what a reader
looks for, at every strength level.

v2 is the PSNR-optimal denoiser when told the true noise, and telling it a
lower noise (the strength s < 1 of `xdn.strength`) trades noise removal for
detail, but only as a side effect. v3 is trained for that trade
(`xdn.fidelity_loss`): told the true noise (s = 1, half the pairs) it is
trained on MSE alone, as v2 was; told s in [0.5, 1) it is also trained to
pass faint lesions unchanged (lesion twins under the same noise) and to
leave a residual with the input noise's grain (NPS shape), the more the
lower s. X-ray noise is told its own variance law half of the time (the
exponential law of quanta through the log transform), its closest line
otherwise (what a blind affine fit gives). The mixture has more white and
Poisson noise than v2's, whose white-noise figures fell below v1's.

  python run.py --config=configs/pretrained_v3.py --workdir=runs/pretrained_v3 \\
      --config.data.manual_dir=/path/to/nih1024/images

See xdn/pretrained/MODEL_CARD.md for what it was trained on and measured.
"""

from configs import pretrained_v2


def get_config(arg: str = ''):
  config = pretrained_v2.get_config()
  config.init = 'pretrained'  # v2, the shipped model when v3 was trained.

  # Per image: white Gaussian 4/11, Poisson-Gaussian 2/11, correlated
  # Gaussian 3/11, X-ray 2/11.
  config.noise.train_kinds = ','.join(
      ['gaussian'] * 4 + ['poisson_gaussian'] * 2 +
      ['correlated_gaussian'] * 3 + ['xray'] * 2)
  config.noise.xray_law_fraction = 0.5

  # The twins carry the lesions now.
  config.lesions.rate = 0.0
  config.fidelity.weight = 0.3
  config.fidelity.texture_weight = 0.05
  config.fidelity.min_strength = 0.5
  config.fidelity.full_fraction = 0.5

  config.optimizer.learning_rate = 2e-4
  config.optimizer.warmup_steps = 100
  config.num_train_steps = 6000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 200
  if arg == 'quick':
    config.num_train_steps = 100
    config.eval_every_steps = 50
    config.checkpoint_every_steps = 50
  return config
