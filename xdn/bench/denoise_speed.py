"""`xdn-bench --inference`: seconds per radiograph, memory and FLOP/s.

Each size is a synthetic radiograph-like image with correlated noise,
denoised end to end as `xdn-denoise` does it in-process (noise estimate,
the shipped model whole or tiled by the library's one rule), after one
untimed call that compiles. Reported per size: the median seconds, the
model's FLOPs (XLA's cost analysis of the compiled forward pass) and the
achieved FLOP/s against the machine's peak.

Peak (stated, not measured): cores x clock x FLOP per cycle per core, the
clock from /proc/cpuinfo ('cpu MHz', the current one: a lower bound of the
boost clock), and 64 float32 FLOP per cycle with AVX-512 (two 512-bit FMA
units: 2 x 16 lanes x 2), 32 with AVX2, twice that for bfloat16 where the
CPU has AVX512_BF16 or AMX. Peak RSS is the process's (getrusage), so it
grows with the largest size timed.
"""

import os
import resource
import statistics
import time
from typing import Any, Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xdn import inference
from xdn.noise import estimation as noise_estimation
from xdn.noise import synthetic as noise
from xdn.runtime import xla_flags


def peak_flops(precision: str) -> Dict[str, Any]:
  """The machine's stated peak FLOP/s (see the module docstring)."""
  features = xla_flags.cpu_features()
  mhz = []
  try:
    with open('/proc/cpuinfo') as f:
      mhz = [float(l.split(':')[1]) for l in f if l.startswith('cpu MHz')]
  except OSError:
    pass
  clock = (max(mhz) if mhz else 0.0) * 1e6
  per_cycle = 64 if 'avx512f' in features else 32 if 'avx2' in features else 8
  if precision == 'bfloat16' and xla_flags.native_bfloat16():
    per_cycle *= 2
  cores = os.cpu_count() or 1
  return {'peak_flops': cores * clock * per_cycle, 'cores': cores,
          'clock_hz': clock, 'flop_per_cycle_per_core': per_cycle}


def _test_image(size: int, seed: int = 0) -> np.ndarray:
  y, x = np.mgrid[0:size, 0:size] / size
  clean = (0.45 + 0.3 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)
  return np.asarray(noise.add_noise(
      jax.random.key(seed), jnp.asarray(clean)[None, ..., None],
      'correlated_gaussian', 15.0, correlation=0.5))[0, ..., 0]


def _jaxpr_flops(jaxpr) -> float:
  """Multiply-add FLOPs (2 per MAC) of the convolutions and matrix products
  of a jaxpr, sub-jaxprs included. XLA's own cost analysis misses the
  convolutions it hands to oneDNN, so they are counted from the graph."""
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      out = np.prod(eqn.outvars[0].aval.shape)
      rhs = eqn.invars[1].aval.shape
      spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, *spatial)
      taps = np.prod([rhs[d] for d in spec[2:]]) * rhs[spec[1]]
      total += 2.0 * out * taps
    elif name == 'dot_general':
      (contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(
          [lhs[d] for d in contract])
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else [value]):
        inner = getattr(sub, 'jaxpr', None)
        if inner is not None:
          total += _jaxpr_flops(getattr(inner, 'jaxpr', inner))
        elif hasattr(sub, 'eqns'):
          total += _jaxpr_flops(sub)
  return total


def model_flops(denoiser: inference.Denoiser, size: int) -> float:
  """FLOPs of one forward pass on a size x size image."""
  x = jnp.zeros((1, size, size, 1), jnp.float32)
  z = jnp.zeros((1,), jnp.float32)
  closed = jax.make_jaxpr(
      lambda v, x: denoiser.forward()(v, x, (z, z, z, z, z + 1), True))(
          denoiser.variables, x)
  return _jaxpr_flops(closed.jaxpr)


def benchmark(sizes: Sequence[int] = (1024, 2048), repeats: int = 3,
              precision: str = 'float32') -> Dict[str, Any]:
  """Seconds per radiograph of each size, and the rest (see above)."""
  denoiser = inference.load_pretrained(precision)
  results: Dict[str, Any] = {
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'precision': denoiser.precision, 'jax': jax.__version__,
      **peak_flops(denoiser.precision), 'sizes': {}}
  for size in sizes:
    image = _test_image(size)
    run = lambda: inference.denoise_image(denoiser, image)
    run()  # Compile.
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    start = time.perf_counter()
    noise_estimation.estimate_noise(image)
    estimate_s = time.perf_counter() - start
    seconds = statistics.median(times)
    whole = size * size <= inference.MAX_WHOLE_PIXELS
    flops = model_flops(denoiser, size) if whole else 0.0
    results['sizes'][str(size)] = {
        'seconds': seconds, 'estimate_seconds': estimate_s,
        'whole': whole, 'model_flops': flops,
        'achieved_flops': flops / seconds if flops else None,
        'fraction_of_peak': (flops / seconds / results['peak_flops']
                             if flops and results['peak_flops'] else None)}
  results['peak_rss_mb'] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 1024
  return results
