"""xdn-noise: the noise report of radiographs (`xdn.noise.report`).

  xdn-noise scan.dcm --output=report/     # or: python -m xdn.cli.noise ...
  xdn-noise scan.dcm --after=denoised/scan.dcm --output=report/

Writes `<name>_noise.json` and `<name>_noise.png` per input into --output:
the noise estimate xdn's denoiser is told, the std against intensity, the
flat regions' std, correlations and radial NPS; with --after (the denoised
copies, e.g. from xdn-denoise) the after side too: the output's std and
NPS in the same flat regions, the NPS frequency shift and shape.
"""

import sys
from typing import Sequence

from absl import flags

from xdn.cli import shared
from xdn import errors
from xdn.noise import report as noise_report

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags; defined on use so importing this module adds none."""
  shared.define_output('noise_report', 'Folder for the report files.')
  flags.DEFINE_list('after', None, 'The denoised copies of the inputs (one '
                    'per input, in order, e.g. from xdn-denoise): adds the '
                    'after side (std and NPS of the output in the same flat '
                    'regions, NPS frequency shift and shape).')


def summary(path: str, result: dict, output: str) -> str:
  """The one line printed for one report."""
  flat = result['flat_regions']
  line = (f"{path}: {result['estimate']['description']}; flat regions: std "
          f"{flat['std']:.2f}, correlation y {flat['rho_y']:.2f} x "
          f"{flat['rho_x']:.2f}")
  if 'after' in result:
    a = result['after']
    line += (f"; denoised: std {a['flat_std_after']:.2f} "
             f"({a['std_ratio']:.0%} kept), NPS mean frequency "
             f"{a['nps_mean_frequency_before']:.3f} -> "
             f"{a['nps_mean_frequency_after']:.3f} cycles/px "
             f"({a['nps_mean_frequency_shift']:+.0%}), shape RMSD "
             f"{a['nps_shape_rmsd']:.2f}")
  return line + f'; report in {output}'


def main(argv: Sequence[str]) -> None:
  files = argv[1:]
  if not files:
    raise errors.UserError('name the radiograph files, e.g. '
                           'xdn-noise scan.dcm --output=report')
  output = FLAGS.output
  afters = FLAGS.after or []
  if afters and len(afters) != len(files):
    raise errors.UserError(f'--after names {len(afters)} denoised files for '
                           f'{len(files)} inputs; give one per input, in '
                           'order')
  failed = 0
  for i, path in enumerate(files):
    try:
      result = noise_report.write(path, output, afters[i] if afters else None)
    except (OSError, ValueError) as e:  # UserError is a ValueError.
      # One file's problem: the others still get their reports.
      print(f'error: {path}: {e}')
      failed += 1
      continue
    print(summary(path, result, output))
  if failed:
    sys.exit(1)


def run() -> None:
  """Console-script entry point (setup.cfg: xdn-noise)."""
  shared.run(main, define_flags)


if __name__ == '__main__':
  run()
