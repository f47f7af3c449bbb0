"""`xdn-bench --beam`: xdn-beam against xdn-denoise on one folder.

  xdn-bench --beam [--beam_images=16] [--beam_workers=1,2,4] [--beam_dir=DIR]

Makes a folder of synthetic radiographs of mixed sizes (512^2 to 2048^2,
half 16-bit PNG, half 12-bit DICOM; smooth anatomy-like ramps with
Gaussian noise; never a real patient's image), denoises it once with
`xdn-denoise` untimed (so that both sides find every program in JAX's
compilation cache, as a second run of either would), then times
`xdn-denoise` and `xdn-beam` on the DirectRunner with
`--direct_running_mode=multi_processing` and 1, 2, 4 ... worker processes,
each a fresh process tree as a user starts it. Reported per run: wall
seconds, seconds per image and per megapixel, and the peak over the run of
the summed resident memory of the whole process tree (sampled every 0.2 s
with psutil, which Beam installs). Each Beam run's outputs are compared
with xdn-denoise's: identical bytes, else the largest pixel difference.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from xdn import image_io

SIZES = ((512, 512), (1024, 1024), (1536, 1536), (2048, 2048),
         (2048, 1536), (1024, 768), (1536, 2048), (768, 512))


def make_folder(folder: str, count: int, seed: int = 0) -> int:
  """`count` radiographs of mixed sizes in `folder`; returns the pixels."""
  from pydicom import uid  # pylint: disable=g-import-not-at-top
  import pydicom  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  total = 0
  for i in range(count):
    h, w = SIZES[i % len(SIZES)]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    clean = 0.2 + 0.5 * np.exp(-(((yy - h / 2) / (0.4 * h))**2 +
                                 ((xx - w / 2) / (0.3 * w))**2))
    noisy = np.clip(clean + rng.normal(0, 0.03, (h, w)), 0, 1)
    total += h * w
    if i % 2 == 0:
      png = np.round(noisy * 65535).astype(np.uint16)
      with open(os.path.join(folder, f'img{i:03d}.png'), 'wb') as f:
        f.write(image_io.encode_png(png, compress_level=1))
      continue
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.SOPClassUID = uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid.generate_uid(entropy_srcs=['bench', str(i)])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SeriesInstanceUID = uid.generate_uid(entropy_srcs=['bench'])
    ds.StudyInstanceUID = uid.generate_uid(entropy_srcs=['bench study'])
    ds.Modality = 'DX'
    ds.PatientName = 'Synthetic^Bench'
    ds.set_pixel_data(np.round(noisy * 4095).astype(np.uint16),
                      'MONOCHROME2', 12, generate_instance_uid=False)
    ds.save_as(os.path.join(folder, f'img{i:03d}.dcm'),
               enforce_file_format=True)
  return total


class _PeakMemory:
  """Peak summed RSS (bytes) of a process and all its descendants."""

  def __init__(self, pid: int):
    import psutil  # pylint: disable=g-import-not-at-top  # Beam's.
    self._root = psutil.Process(pid)
    self._psutil = psutil
    self.peak = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def _sample(self) -> None:
    while not self._stop.is_set():
      try:
        tree = [self._root] + self._root.children(recursive=True)
        total = 0
        for process in tree:
          try:
            total += process.memory_info().rss
          except self._psutil.Error:
            pass
        self.peak = max(self.peak, total)
      except self._psutil.Error:
        pass
      self._stop.wait(0.2)

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    return self.peak


def _timed(command: List[str]) -> Dict[str, Any]:
  start = time.perf_counter()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  memory = _PeakMemory(process.pid)
  _, stderr = process.communicate()
  seconds = time.perf_counter() - start
  peak = memory.stop()
  if process.returncode != 0:
    raise RuntimeError(f'{" ".join(command)} failed:\n{stderr[-3000:]}')
  # Other work on the machine slows a run: its 1-minute load average at
  # the end tells (about the core count when the run had them to itself).
  return {'seconds': seconds, 'peak_rss_gb': peak / 2**30,
          'load_average': os.getloadavg()[0]}


def _compare(folder: str, reference: str) -> Dict[str, Any]:
  """Identical files, or the largest pixel difference in [0, 1] units."""
  from xdn import radiograph_io  # pylint: disable=g-import-not-at-top
  identical, worst, names = 0, 0.0, sorted(
      n for n in os.listdir(reference) if n.endswith(('.png', '.dcm')))
  for name in names:
    a, b = os.path.join(folder, name), os.path.join(reference, name)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
      if fa.read() == fb.read():
        identical += 1
        continue
    worst = max(worst, float(np.abs(
        radiograph_io.read_radiograph(a).pixels -
        radiograph_io.read_radiograph(b).pixels).max()))
  return {'files': len(names), 'identical': identical,
          'max_pixel_difference': worst}


def benchmark(images: int = 16, workers: Sequence[int] = (1, 2, 4),
              folder: Optional[str] = None) -> Dict[str, Any]:
  """Times xdn-denoise and xdn-beam (see the module docstring)."""
  base = folder or tempfile.mkdtemp(prefix='xdn-beam-bench-')
  inputs = os.path.join(base, 'in')
  pixels = make_folder(inputs, images)
  python = sys.executable
  cli = lambda out: [python, '-m', 'xdn.denoise', f'--out={out}',
                     '--overwrite', inputs]
  subprocess.run(cli(os.path.join(base, 'warmup')), check=True,
                 capture_output=True)  # Fills the compilation cache.
  runs = []
  reference = os.path.join(base, 'xdn-denoise')
  result = _timed(cli(reference))
  result['run'] = 'xdn-denoise'
  runs.append(result)
  for n in workers:
    out = os.path.join(base, f'beam-{n}')
    result = _timed([python, '-m', 'xdn.beam', f'--input={inputs}',
                     f'--output={out}', '--overwrite',
                     '--direct_running_mode=multi_processing',
                     f'--direct_num_workers={n}'])
    result['run'] = f'xdn-beam, {n} worker process{"es" if n > 1 else ""}'
    result['same_outputs'] = _compare(out, reference)
    runs.append(result)
  for result in runs:
    result['seconds_per_image'] = result['seconds'] / images
    result['seconds_per_megapixel'] = result['seconds'] / (pixels / 1e6)
  return {'images': images, 'megapixels': pixels / 1e6,
          'cpu_count': os.cpu_count(), 'folder': base, 'runs': runs}


def markdown(results: Dict[str, Any]) -> str:
  """The results as the table in docs/beam.md."""
  lines = ['| run | wall s | s / image | s / megapixel | peak RSS (GB, '
           'all processes) | load average | outputs = xdn-denoise |',
           '| --- | ---: | ---: | ---: | ---: | ---: | --- |']
  for r in results['runs']:
    same = r.get('same_outputs')
    same = ('reference' if same is None else
            f'{same["identical"]}/{same["files"]} identical' +
            (f', max diff {same["max_pixel_difference"]:.1e}'
             if same['identical'] < same['files'] else ''))
    lines.append(f'| {r["run"]} | {r["seconds"]:.1f} | '
                 f'{r["seconds_per_image"]:.2f} | '
                 f'{r["seconds_per_megapixel"]:.2f} | '
                 f'{r["peak_rss_gb"]:.2f} | {r.get("load_average", 0):.1f} | '
                 f'{same} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  out = benchmark()
  print(json.dumps(out, indent=1))
  print(markdown(out))
