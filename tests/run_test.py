"""End to end: `python run.py` per config trains, writes, and resumes."""

import glob
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(config_file, workdir, data_dir, *overrides):
  cmd = [sys.executable, os.path.join(REPO, 'run.py'),
         f'--config={os.path.join(REPO, "configs", config_file)}',
         f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
         '--config.batch_size=4', '--config.log_every_steps=1',
         '--config.eval_every_steps=2', '--config.checkpoint_every_steps=2',
         '--config.data.num_eval_images=6', '--config.num_sample_images=3',
         *overrides]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stderr


def checkpoint_steps(workdir, folder='checkpoints'):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, folder))
                if d.isdigit())


@pytest.mark.parametrize('config_file,extra', [
    ('autoencoder.py', []),
    ('vae.py', ['--config.num_generated_images=4']),
    # The U-Net's train step is tested in train_test.py; its run.py path is
    # the same as the others'. CI runs it on the newest Python (-m slow).
    pytest.param('unet.py', ['--config.model.base_width=8',
                             '--config.model.depth=2'],
                 marks=pytest.mark.slow),
    # 12.6 M parameters with 64x64 kernels: minutes on 2 CPU cores.
    pytest.param('seed_skip.py', [], marks=pytest.mark.slow),
])
def test_run_trains_writes_and_resumes(tmp_path, sample_data_dir, config_file,
                                       extra):
  workdir = str(tmp_path / 'run')
  log = run(config_file, workdir, sample_data_dir,
            '--config.num_train_steps=2', *extra)
  assert 'chest_xray_sample' in log  # The data set used is announced.
  assert checkpoint_steps(workdir) == [2]
  assert checkpoint_steps(workdir, 'best') == [2]
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert os.path.exists(os.path.join(workdir, 'samples',
                                     'denoise_0000002.png'))
  if config_file == 'vae.py':
    assert os.path.exists(os.path.join(workdir, 'samples',
                                       'generated_0000002.png'))
    assert os.path.exists(os.path.join(workdir, 'samples', 'generated.gif'))

  # The same command with more steps resumes at step 2, not from scratch.
  log = run(config_file, workdir, sample_data_dir,
            '--config.num_train_steps=4', *extra)
  assert 'Resumed from' in log and 'at step 2' in log
  assert checkpoint_steps(workdir) == [2, 4]
  assert os.path.exists(os.path.join(workdir, 'samples',
                                     'denoise_0000004.png'))
