"""One tiny run of xdn.bench, so the benchmark cannot rot (no timing checks)."""

import json

import pytest

from xdn import bench
from xdn.bench import keras_reference
from xdn.cli import bench as bench_cli


@pytest.mark.slow  # CI runs it on the newest Python (pytest -m slow).
def test_benchmark_tiny_step_with_reference(sample_data_dir):
  results = bench.benchmark(['autoencoder'], batch_size=2, repeats=1,
                            warmup=0, pipeline_steps=1, reference=True,
                            data_dir=sample_data_dir)
  json.dumps(results)  # It is printed as JSON.
  entry = results['models']['autoencoder']
  assert entry['parameters'] == 1_111_105
  assert entry['image_size'] == 64 and entry['batch_size'] == 2
  for field in ('train_images_per_s', 'eval_images_per_s',
                'keras_train_images_per_s', 'ratio'):
    assert entry[field] > 0
  # The rates are rounded to 0.1 image/s (tiny at batch 2), the ratio not.
  assert entry['ratio'] == pytest.approx(
      entry['train_images_per_s'] / entry['keras_train_images_per_s'],
      rel=0.1)
  assert entry['train_compile_s'] > 0
  pipeline = results['pipeline']
  assert pipeline['images_per_s'] > 0 and pipeline['data'] == (
      'chest_xray_sample')
  assert pipeline['times_fastest_model'] == pytest.approx(
      pipeline['images_per_s'] / entry['train_images_per_s'], rel=0.1)
  assert results['peak_resident_mib'] > 100  # JAX alone takes more.
  assert results['device_count'] >= 1 and results['jax']


def test_bench_configs_are_the_quick_variants():
  for name in bench.MODELS:
    config = bench.model_config(name)
    assert config.model.name == name
    assert config.num_train_steps == 800


@pytest.mark.parametrize('name', [
    'vae', pytest.param('unet', marks=pytest.mark.slow)])  # CI: -m slow.
def test_keras_references_run(name):
  size = 64 if name == 'vae' else 16  # The U-Net takes any size.
  assert keras_reference.train_images_per_second(
      name, batch=2, size=size, repeats=1, warmup=0) > 0


def test_keras_autoencoder_matches_seed_parameter_count():
  assert keras_reference.parameter_count('autoencoder') == 1_111_105


def test_entry_point_exists():
  assert callable(bench_cli.run)
