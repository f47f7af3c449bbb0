"""What every xdn command line shares: the flags that mean the same thing in
every command, one error style, and a `--help` that lists the command's own
flags.

The same concept has the same flag everywhere:

  --output (alias --out)        where results go
  --model (alias --workdir)     'pretrained' (the shipped model) or a
                                training workdir
  --checkpoint                  which checkpoint of a workdir: best | latest
  --precision                   auto | float32 | bfloat16
  --strength                    low | medium | high | full | a factor
  --noise, --read_noise         a noise spec (`xdn.noise.spec`)
  --compile_cache               keep compiled programs across runs

Errors: a bad input or configuration (`errors.UserError`) prints one line,
`error: ...`, and exits 1; a missing optional extra (`errors.MissingExtra`) prints
one line naming the pip command and exits 2. Anything else is a bug and keeps
its traceback.
"""

import sys
from typing import Callable, Iterable, Optional, Sequence

from absl import app
from absl import flags

from xdn import errors

FLAGS = flags.FLAGS
CHECKPOINTS = ('best', 'latest')


def exit_on_user_error(error: errors.UserError) -> None:
  """Prints `error` as one line and exits: 2 for a missing extra, else 1."""
  print(f'error: {error}', file=sys.stderr)
  sys.exit(2 if isinstance(error, errors.MissingExtra) else 1)


# --- shared flag definitions (each command defines the ones it uses) -------


def define_output(default: Optional[str], help_text: str) -> None:
  flags.DEFINE_string('output', default, help_text)
  flags.DEFINE_alias('out', 'output')


def define_model(multi: bool = False) -> None:
  """--model (alias --workdir) and --checkpoint."""
  what = ("'pretrained' (the model shipped with xdn) or a training workdir "
          '(run.py / xdn-train --workdir)')
  if multi:
    flags.DEFINE_multi_string(
        'model', [], f'Models to evaluate, each {what}; comma-separated or '
        'repeated. None: baselines only.')
  else:
    flags.DEFINE_string('model', None, f'The model: {what}. Default: the '
                        'shipped one.')
  flags.DEFINE_alias('workdir', 'model')
  flags.DEFINE_enum('checkpoint', 'best', list(CHECKPOINTS),
                    "Which checkpoint of a workdir: its 'best' validation "
                    "PSNR or its 'latest'.")


def define_precision(default: str = 'auto', note: str = '') -> None:
  from xdn.inference import precision  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum('precision', default, list(precision.PRECISIONS),
                    "Compute precision. 'auto': bfloat16 where the model's "
                    'measured PSNR cost allows it for the noise at hand and '
                    'the machine computes it natively, else float32.' +
                    (f' {note}' if note else ''))


def define_strength(help_text: str = '') -> None:
  flags.DEFINE_string('strength', None, help_text or (
      "How much noise to remove: 'low', 'medium', 'high', 'full' (the "
      "model's calibrated levels) or a factor in (0, 2] of the noise the "
      "model is told. Default: the model's default level."))


def define_compile_cache() -> None:
  flags.DEFINE_bool('compile_cache', True, 'Keep compiled programs on disk '
                    '(~/.cache/xdn/jax, XDN_COMPILE_CACHE=DIR to move it) so '
                    'a later run starts without compiling.')


def define_noise(default: str, help_text: str) -> None:
  """--noise (a `xdn.noise.spec`) and --read_noise."""
  from xdn.noise import synthetic  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('noise', default, help_text)
  flags.DEFINE_float('read_noise', synthetic.DEFAULT_READ_NOISE,
                     'poisson_gaussian: the read-noise std (0-255 scale).')


# --- running a command -------------------------------------------------------


def _list_flags_in_help(modules: Iterable[str]) -> None:
  """Makes --help list the flags `modules` defined: absl lists the key
  flags of sys.argv[0], which a console script's wrapper defines none of."""
  by_module = FLAGS.flags_by_module_dict()
  main = sys.argv[0]
  for module in modules:
    for flag in by_module.get(module, []):
      FLAGS.register_key_flag_for_module(main, flag)


def run(main: Callable[[Sequence[str]], Optional[int]],
        define_flags: Optional[Callable[[], None]] = None) -> None:
  """A console script: defines the command's flags, lists them in --help,
  runs `main` under absl and prints a `UserError` as one line."""
  if define_flags is not None:
    define_flags()
  _list_flags_in_help([main.__module__, __name__])

  def guarded(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      exit_on_user_error(e)

  app.run(guarded)
