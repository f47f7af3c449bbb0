"""XLA flag choice (never an unknown flag) and inference precision."""

import os
import subprocess
import sys

import numpy as np
import pytest

from xdn.bench import denoise_speed
from xdn.inference import denoiser as inference
from xdn.runtime import xla_flags

REPO = os.path.join(os.path.dirname(__file__), '..')


@pytest.mark.parametrize('version,expected', [
    ('0.10.2', ['xla_cpu_experimental_ynn_fusion_type']),
    ('0.11.0', []),
    ('0.12.0.1', ['xla_cpu_experimental_onednn_custom_call',
                  'xla_cpu_experimental_ynn_fusion_type']),
    ('0.13.1', ['xla_cpu_experimental_onednn_custom_call',
                'xla_cpu_experimental_ynn_fusion_type'])])
def test_flags_follow_the_jaxlib_version(version, expected):
  assert [xla_flags.flag_name(f) for f in xla_flags.choose(version)] == (
      expected)
  assert xla_flags.choose(version, 'aarch64') == (
      [] if expected != ['xla_cpu_experimental_ynn_fusion_type'] else
      xla_flags.choose(version))
  # Never the oneDNN route that makes bfloat16 56x slower.
  assert all('xla_cpu_use_onednn' not in f for f in xla_flags.choose(version))


def test_an_unknown_flag_is_never_set():
  assert not xla_flags.known_to_jaxlib('xla_cpu_surely_not_a_flag_of_xla')
  # Every flag it would set here is in this jaxlib's binary.
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  for flag in xla_flags.choose(importlib.metadata.version('jaxlib')):
    if xla_flags.known_to_jaxlib(xla_flags.flag_name(flag)):
      continue
    # Then configure must leave it out: check in a fresh process.
    env = {k: v for k, v in os.environ.items()
           if k not in ('XLA_FLAGS', 'XDN_KEEP_XLA_FLAGS')}
    out = subprocess.run(
        [sys.executable, '-c', 'from xdn.runtime import xla_flags; '
         'print(xla_flags.configure_xla_cpu())'], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120).stdout
    assert xla_flags.flag_name(flag) not in out


def test_configure_in_a_fresh_process_starts_jax(tmp_path):
  # The chosen flags must not abort the process (XLA's answer to an
  # unknown flag), and the user's own XLA_FLAGS win.
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', 'XDN_KEEP_XLA_FLAGS')}
  env['XLA_FLAGS'] = '--xla_cpu_experimental_ynn_fusion_type=eltwise'
  code = ('import os; from xdn.runtime import xla_flags; '
          'added = xla_flags.configure_xla_cpu(); import jax.numpy as jnp; '
          'print(float(jnp.ones(4).sum()), os.environ["XLA_FLAGS"])')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith('4.0')
  assert result.stdout.count('xla_cpu_experimental_ynn_fusion_type') == 1
  assert 'ynn_fusion_type=eltwise' in result.stdout


def test_training_leaves_the_onednn_custom_call_out():
  # Fresh processes: what run.py (training) and xdn-denoise (inference)
  # would add on this jaxlib.
  env = {k: v for k, v in os.environ.items()
         if k not in ('XLA_FLAGS', 'XDN_KEEP_XLA_FLAGS')}
  added = {}
  for training in (False, True):
    added[training] = subprocess.run(
        [sys.executable, '-c', 'from xdn.runtime import xla_flags; '
         f'print(xla_flags.configure_xla_cpu(training={training}))'],
        cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120).stdout
  assert 'onednn' not in added[True]
  if 'onednn' in added[False]:  # jaxlib >= 0.12 on x86: the rest stays.
    assert 'ynn_fusion_type' in added[True]


def test_cpu_features_are_read():
  features = xla_flags.cpu_features()
  if os.path.exists('/proc/cpuinfo'):
    assert features  # Any x86 or ARM Linux lists some.
  assert xla_flags.native_bfloat16() == bool(
      features & {'avx512_bf16', 'amx_bf16'})


def _image(size=96, seed=0):
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size, 0:size] / size
  return np.clip(0.5 + 0.2 * np.sin(4 * x) + rng.normal(0, 0.08,
                                                        (size, size)),
                 0, 1).astype(np.float32)


def test_float32_precision_is_the_reference():
  reference = inference.load_pretrained()
  told = inference.load_pretrained('float32')
  image = _image()
  a = inference.denoise_image(reference, image)
  b = inference.denoise_image(told, image)
  np.testing.assert_allclose(a, b, atol=1e-5)
  assert told.precision == 'float32'


def test_bfloat16_outputs_float32_close_to_float32():
  image = _image()
  f32 = inference.denoise_image(inference.load_pretrained('float32'), image)
  bf16_model = inference.load_pretrained('bfloat16')
  bf16 = inference.denoise_image(bf16_model, image)
  assert bf16.dtype == np.float32 and bf16_model.precision == 'bfloat16'
  assert 0 <= bf16.min() and bf16.max() <= 1
  # bfloat16 keeps 8 bits of mantissa: close, not equal.
  assert np.abs(bf16 - f32).mean() < 3e-3
  assert np.abs(bf16 - f32).max() > 0


def test_auto_precision_needs_a_stated_small_cost():
  config = inference.load_pretrained().config.copy_and_resolve_references()
  with config.unlocked():
    config.inference = {'bfloat16_psnr_cost_db': 0.5}
  assert inference.resolve_precision('auto', config) == 'float32'
  config.inference.bfloat16_psnr_cost_db = 0.05
  expected = 'bfloat16' if xla_flags.native_bfloat16() else 'float32'
  assert inference.resolve_precision('auto', config) == expected
  with pytest.raises(Exception, match='precision'):
    inference.resolve_precision('float16', config)


def test_auto_precision_decides_per_noise_kind():
  """With costs per kind, 'auto' computes each call in bfloat16 only where
  its images' kind costs at most 0.1 dB."""
  shipped = inference.load_pretrained()
  config = shipped.config.copy_and_resolve_references()
  with config.unlocked():
    del config.inference['bfloat16_psnr_cost_db']  # A number until now.
    config.inference.bfloat16_psnr_cost_db = {
        'gaussian': 0.03, 'poisson_gaussian': 0.05, 'xray': 0.17}
  auto = inference.Denoiser(config, shipped.variables, shipped.step, 'card',
                            precision='auto', ensemble_max_pixels=0)
  if not xla_flags.native_bfloat16():
    assert auto.precision == 'float32'
    return
  assert auto.precision == 'auto'
  white = [inference.NoiseEstimate('gaussian', 0.0, 1e-3)]
  xray = [inference.NoiseEstimate('xray', 1e-3, 0.0, xray_dose=400.0)]
  correlated = [inference.NoiseEstimate('gaussian', 0.0, 1e-3, 0.4, 0.4)]
  assert auto.precision_for(white) == 'bfloat16'
  assert auto.precision_for(xray) == 'float32'
  assert auto.precision_for(white + xray) == 'float32'
  assert auto.precision_for(correlated) == 'float32'  # Not measured.
  image = _image()[None, ..., None]
  bf16 = inference.load_pretrained('bfloat16', ensemble_max_pixels=0)
  shipped = inference.load_pretrained(ensemble_max_pixels=0)
  np.testing.assert_allclose(auto(image, white), bf16(image, white),
                             atol=1e-6)
  np.testing.assert_allclose(auto(image, xray), shipped(image, xray),
                             atol=1e-6)


def test_inference_bench_entry():
  results = denoise_speed.benchmark([64], repeats=1)
  entry = results['sizes']['64']
  assert entry['seconds'] > 0 and entry['whole']
  # The shipped U-Net costs ~97 kFLOP per pixel (counted from the graph).
  assert 80e3 < entry['model_flops'] / 64**2 < 120e3
  assert 0 < entry['fraction_of_peak'] < 1
  assert results['peak_rss_mb'] > 0 and 'precision' in results


def test_float32_outputs_with_the_chosen_flags_equal_those_without(tmp_path):
  # Two fresh processes, with and without xdn's XLA flags: the shipped
  # model's float32 output may differ by rounding only.
  code = ('import sys, numpy as np; from xdn import inference; '
          'rng = np.random.default_rng(0); '
          'y, x = np.mgrid[0:160, 0:160] / 160; '
          'img = np.clip(0.5 + 0.2 * np.sin(5 * x) + rng.normal(0, 0.05, '
          'x.shape), 0, 1).astype(np.float32); '
          'np.save(sys.argv[1], inference.denoise_image('
          'inference.load_pretrained(), img))')
  outs = []
  for keep in ('1', '0'):
    env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
    env['XDN_KEEP_XLA_FLAGS'] = keep
    path = str(tmp_path / f'out{keep}.npy')
    result = subprocess.run([sys.executable, '-c', code, path], cwd=REPO,
                            env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outs.append(np.load(path))
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
