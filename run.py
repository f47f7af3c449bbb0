"""Trains an xdn denoiser: `python run.py --config=configs/vae.py --workdir=W`.

Every config field can be overridden: `--config.num_train_steps=100`.
Rerunning the same command resumes from the latest checkpoint in W. The
same command is installed as `xdn-train`; both run `xdn.cli.train`, which
calls `xdn.training.train_and_evaluate(config, workdir)`.
"""

from xdn.cli import train

if __name__ == '__main__':
  train.run()
