"""Training: the loop and its steps (`train`), sample grids and the GIF
(`visualize`), warm starts from a shipped model (`warm_start`).

`xdn.training.train_and_evaluate(config, workdir)` is what `run.py` and
`xdn-train` call; it is loaded on first use, so importing the package is
cheap.
"""


def __getattr__(name):
  if name in ('train_and_evaluate', 'train_step', 'eval_step'):
    from xdn.training import train  # pylint: disable=g-import-not-at-top
    return getattr(train, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
