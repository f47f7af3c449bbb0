r"""`xdn-beam`: denoise an archive of radiographs with Apache Beam.

  xdn-beam --input='archive/**/*.dcm' --output=denoised/ \
      [--noise=auto] [--precision=auto] [--model=pretrained] \
      [--strength=medium] [--skip_existing] [any Beam pipeline option]
  python -m xdn.beam ...   # the same

The same pipeline runs on the DirectRunner (the default; add
`--direct_running_mode=multi_processing --direct_num_workers=N` for N
worker processes), on a Dask cluster (`--runner=DaskRunner
[--dask_client_address=tcp://HOST:8786]`, the dask extra), on Beam's
portable runner (`--runner=PortableRunner --job_endpoint=...`, the path of
the Flink and Spark job servers) and, changed by pipeline options only, on
Flink, Spark or Dataflow (docs/beam.md). Inputs are a glob (Beam's: `*`
stays inside a folder, `**` crosses folders) or a folder (everything xdn
reads under it), on any file system Beam has installed (local, gs://,
s3://, hdfs://).

  match files -> group by output name (refuses two inputs with one output;
  spreads the files over the workers) -> decode (xdn's readers) ->
  RunInference(KeyedModelHandler(XdnModelHandler)) -> write -> the tables

Outputs are `xdn-denoise`'s: the input's name relative to the input root
under --output, in the same format, bit depth and DICOM metadata
(`xdn.inference.outputs`, `xdn.io.radiographs`), written atomically (a temporary name
in the same folder, then a rename; object stores publish an object only
once it is whole) under names that depend on the input alone. So a rerun
after a crash, or a retried bundle, never leaves half a file and never a
second copy. Beside them, in --output:

  xdn_results.csv  input, output, status (written | unchanged | skipped),
                   height, width, noise (told or estimated), noise_sigma,
                   noise_correlation, seconds; `pandas.read_csv` reads it.
  xdn_failed.txt   one line per input that failed: path, a tab, the
                   reason. A bad file never stops the pipeline.

Beam metrics (namespace `xdn`): images, pixels, written, unchanged,
skipped, failures. An existing output is kept with --skip_existing (the
input is not even decoded), replaced with --overwrite, and otherwise
accepted only if it is byte for byte what this run writes (a retried
bundle, a rerun); else that input fails.

The inputs are read twice (to decode them before the model, and for their
header and format when writing), so that only arrays and strings, never a
Python closure, travel between workers.
"""

import argparse
import csv
import dataclasses
import io
import logging
import os
import sys
import tempfile
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Sequence, Tuple)

import apache_beam as beam
from apache_beam import metrics
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference import base
from apache_beam.options import pipeline_options
import numpy as np

from xdn.beam import handler as handler_lib
from xdn import errors
from xdn import inference
from xdn.inference import outputs
from xdn.inference import strength as strength_lib
from xdn.inference import told
from xdn.io import atomic
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io
from xdn.noise import synthetic as noise
from xdn import pretrained

RESULTS = 'xdn_results'  # .csv in --output
FAILED = 'xdn_failed'  # .txt in --output
RESULT_COLUMNS = ('input', 'output', 'status', 'height', 'width', 'noise',
                  'noise_sigma', 'noise_correlation', 'seconds')
_GLOB = '*?[{'
_NS = handler_lib.METRICS_NAMESPACE


class XdnOptions(pipeline_options.PipelineOptions):
  """xdn-beam's own options; every other option goes to Beam."""

  @classmethod
  def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--input', help="Radiographs to denoise: a glob "
                        "('archive/**/*.dcm'; * stays in a folder, ** "
                        'crosses folders) or a folder (all PNG, JPEG, TIFF, '
                        'BMP and DICOM files under it).')
    parser.add_argument('--output', '--out', dest='output', help='Folder for the denoised files, '
                        f'{RESULTS}.csv and {FAILED}.txt (created).')
    parser.add_argument('--model', '--workdir', dest='model',
                        default='pretrained', help="'pretrained' "
                        '(the model shipped inside xdn), an exported model '
                        'folder or a training workdir, at a path every '
                        'worker can read.')
    parser.add_argument('--checkpoint', default='best',
                        choices=['best', 'latest'],
                        help="A workdir's checkpoint.")
    parser.add_argument('--noise', default='auto', help="As xdn-denoise "
                        "--noise: 'auto' estimates each image's noise; or "
                        'gaussian:SIGMA, correlated_gaussian:SIGMA,RHO[,RHO_X]'
                        ', poisson:DOSE, poisson_gaussian:DOSE, xray:N0.')
    parser.add_argument('--read_noise', type=float,
                        default=noise.DEFAULT_READ_NOISE,
                        help='Read-noise sigma of poisson_gaussian:DOSE.')
    parser.add_argument('--precision', default='auto',
                        choices=list(inference.PRECISIONS),
                        help='As xdn-denoise --precision.')
    parser.add_argument('--strength', default=None, help="As xdn-denoise "
                        "--strength: 'low', 'medium', 'high', 'full' or a "
                        'number in (0, 2]; default: the model\'s.')
    parser.add_argument('--skip_existing', action='store_true',
                        help='Keep outputs that exist and denoise only the '
                        'inputs that have none (a rerun after a crash).')
    parser.add_argument('--overwrite', action='store_true',
                        help='Replace outputs that exist.')
    parser.add_argument('--max_batch_size', type=int, default=1,
                        help='Images per RunInference batch.')
    parser.add_argument('--max_pixels', type=int,
                        default=inference.MAX_WHOLE_PIXELS,
                        help='Images up to this many pixels are denoised '
                        'whole, larger ones in tiles (as xdn-denoise).')
    parser.add_argument('--no_compile_cache', '--nocompile_cache',
                        dest='no_compile_cache', action='store_true',
                        help="Leave JAX's persistent compilation cache off.")
    parser.add_argument('--compile_cache', dest='no_compile_cache',
                        action='store_false', help='Keep compiled programs '
                        'on disk (the default).')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the per-file steps need to know; pickled to every worker."""
  output: str  # Folder (local absolute path or a Beam file system URL).
  root: str  # Input names are taken relative to this folder.
  skip_existing: bool = False
  overwrite: bool = False

  @property
  def local(self) -> bool:
    return _is_local(self.output)

  def relative(self, path: str) -> str:
    """`path`'s name under the input root (kept under --output)."""
    if _is_local(path) and _is_local(self.root):
      return os.path.relpath(path, self.root)
    return path[len(self.root):].lstrip('/')

  def target(self, path: str, extension: str) -> str:
    return outputs.output_path(self.output, self.relative(path), extension)

  def guessed_target(self, path: str) -> str:
    """The output by the input's name alone: DICOM by extension (or none),
    else PNG. The contents may decide otherwise (`Decode` checks)."""
    ext = os.path.splitext(path)[1].lower()
    dicom = ext in radiograph_io.DICOM_EXTENSIONS or not ext
    return self.target(path, '.dcm' if dicom else '.png')


# ------------------------------------------------------------ file access


def _is_local(path: str) -> bool:
  return FileSystems.get_scheme(path) in (None, 'file')


def _exists(path: str) -> bool:
  return os.path.exists(path) if _is_local(path) else FileSystems.exists(path)


def _read_bytes(path: str) -> bytes:
  if _is_local(path):
    with open(path, 'rb') as f:
      return f.read()
  with FileSystems.open(path) as f:
    return f.read()


def write_atomically(data: bytes, target: str) -> None:
  """Local: a temporary file beside `target`, then os.replace
  (`atomic.write_bytes`). Object stores (gs://, s3://) make an object
  visible only when its upload completes, so a direct write is atomic."""
  if _is_local(target):
    atomic.write_bytes(data, target)
    return
  with FileSystems.create(target, mime_type='application/octet-stream') as f:
    f.write(data)


def read_radiograph(path: str, description: str,
                    opener: Optional[Callable[[], Any]] = None
                    ) -> radiograph_io.Radiograph:
  """xdn's reader on a local path, or on a local copy of a remote file
  (xdn's readers take paths); errors name `path`, never the copy."""
  if _is_local(path):
    return radiograph_io.read_radiograph(path, description)
  suffix = os.path.splitext(path)[1]
  with tempfile.TemporaryDirectory(prefix='xdn-beam-') as folder:
    copy = os.path.join(folder, 'input' + suffix)
    with (opener() if opener else FileSystems.open(path)) as source, \
         open(copy, 'wb') as f:
      f.write(source.read())
    try:
      return radiograph_io.read_radiograph(copy, description)
    except (ValueError, OSError) as e:  # Worded for the user: name `path`.
      raise ValueError(str(e).replace(copy, path)) from e


def one_line(text: str) -> str:
  """`text` on one line, whatever it held."""
  return ' '.join(text.split())


def failure_reason(path: str, error: BaseException) -> str:
  """One line: what went wrong with `path`, as xdn-denoise words it."""
  return one_line(outputs.failure_message(error))


# ------------------------------------------------------------ the steps
#
# Every step has one output, of records (kind, value): 'path' (an input to
# decode), 'image' ((path, pixels)), 'row' (a results line), 'failed'
# ((path, reason)). Runners that cannot give a step several tagged outputs
# (Beam's DaskRunner) run the same graph; `_only` picks one kind.

PATH, IMAGE, ROW, FAILED_KIND = 'path', 'image', 'row', 'failed'


def _only(record: Tuple[str, Any], kind: str) -> Iterator[Any]:
  if record[0] == kind:
    yield record[1]


def _refuse_shared_names(item: Tuple[str, Iterable[str]]
                         ) -> Iterator[Tuple[str, Any]]:
  """(output name, inputs): one input passes; several all fail, since each
  would overwrite the others' output."""
  name, paths = item
  paths = sorted(paths)
  if len(paths) == 1:
    yield PATH, paths[0]
    return
  for path in paths:
    yield FAILED_KIND, (
        path, f'output {name!r} would be written for {len(paths)} inputs '
        f'({", ".join(paths)}); denoise them separately')


class Decode(beam.DoFn):
  """ReadableFile -> ('image', (path, [H, W] float32 pixels)), or a
  'skipped' row or a failure."""

  def __init__(self, settings: Settings):
    self._settings = settings

  def setup(self) -> None:
    radiograph_io.quiet_pydicom_logs()

  def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
    path = readable.metadata.path
    settings = self._settings
    try:
      if settings.skip_existing and _exists(settings.guessed_target(path)):
        yield _skipped(path, settings.guessed_target(path))
        return
      radiograph = read_radiograph(path, '', readable.open)
      target = settings.target(path, radiograph.extension)
      if settings.local and os.path.realpath(target) == os.path.realpath(
          path):
        raise ValueError(f'output {target!r} would overwrite its input; '
                         'choose another --output')
      if settings.skip_existing and _exists(target):
        yield _skipped(path, target)
        return
      yield IMAGE, (path, radiograph.pixels)
    except MemoryError:
      raise  # Not the file's fault: let the runner retry elsewhere.
    except Exception as e:  # pylint: disable=broad-except  # Any: guard.
      yield FAILED_KIND, (path, failure_reason(path, e))


def _skipped(path: str, target: str) -> Tuple[str, str]:
  metrics.Metrics.counter(_NS, 'skipped').inc()
  return ROW, result_row(path, target, 'skipped')


class Write(beam.DoFn):
  """(path, PredictionResult) -> ('row', results line); writes the
  output. An image the model failed on is a failure."""

  def __init__(self, settings: Settings):
    self._settings = settings

  def process(self, element: Tuple[str, base.PredictionResult]
              ) -> Iterator[Any]:
    path, prediction = element
    result: handler_lib.DenoisedImage = prediction.inference
    if result.error:
      yield FAILED_KIND, (path, one_line(result.error))
      return
    settings = self._settings
    try:
      # Read again for its header and format (see the module docstring).
      radiograph = read_radiograph(path, result.description)
      target = settings.target(path, radiograph.extension)
      data = radiograph.to_file(result.pixels)
      status = 'written'
      if _exists(target) and not settings.overwrite:
        if _read_bytes(target) != data:
          raise FileExistsError(
              f'output {target!r} exists with other contents; pass '
              '--overwrite to replace it or --skip_existing to keep it')
        status = 'unchanged'  # This run's own output: a retry or rerun.
      else:
        write_atomically(data, target)
    except MemoryError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # Any: guard.
      yield FAILED_KIND, (path, failure_reason(path, e))
      return
    metrics.Metrics.counter(_NS, status).inc()
    yield ROW, result_row(path, target, status, result.pixels.shape,
                          result.noise, result.seconds)


def result_row(path: str, target: str, status: str,
               shape: Sequence[int] = (), level: Any = None,
               seconds: Optional[float] = None) -> str:
  """One CSV line of the results table (RESULT_COLUMNS)."""
  height, width = (shape if len(shape) == 2 else ('', ''))
  row = [path, target, status, height, width,
         level.describe() if level is not None else '',
         f'{level.sigma:.4f}' if level is not None else '',
         f'{level.correlation:.4f}' if level is not None else '',
         f'{seconds:.3f}' if seconds is not None else '']
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='').writerow(row)
  return buffer.getvalue()


def _failure_line(item: Tuple[str, str]) -> Tuple[str, str]:
  metrics.Metrics.counter(_NS, 'failures').inc()
  path, reason = item
  return FAILED_KIND, f'{path}\t{reason}'


# When one input has several rows (a step run again), the one kept.
_STATUS_RANK = {'written': 0, 'unchanged': 1, 'skipped': 2}


def _line_fields(kind: str, line: str) -> List[str]:
  """A results line's columns, or a failure line's (input, reason)."""
  if kind == ROW:
    return next(csv.reader([line]))
  return line.split('\t', 1)


def _table_text(kind: str, lines: Iterable[Optional[str]]) -> str:
  """The results table (header first) or the failures, one line per input,
  sorted by input: the same file whatever order the workers finished in.

  A step a runner ran again (a retried bundle; a lost Dask worker's tasks,
  which Beam's DaskRunner may also hand on twice) gives an input a second
  line: one is kept, its first status by _STATUS_RANK."""
  best: Dict[str, Tuple[Any, str]] = {}
  for line in lines:
    if line is None:
      continue
    fields = _line_fields(kind, line)
    path = fields[0]
    rank = (_STATUS_RANK.get(fields[2], 3) if kind == ROW else 0, line)
    if path not in best or rank < best[path]:
      best[path] = rank
  text = [best[path][1] for path in sorted(best)]
  if kind == ROW:
    text = [','.join(RESULT_COLUMNS)] + text
  return ''.join(line + '\n' for line in text)


def _write_table(item: Tuple[str, Iterable[Optional[str]]],
                 output: str) -> str:
  """Writes one side file (RESULTS.csv or FAILED.txt) atomically; returns
  its path."""
  kind, lines = item
  name = RESULTS + '.csv' if kind == ROW else FAILED + '.txt'
  path = FileSystems.join(output, name)
  write_atomically(_table_text(kind, lines).encode('utf-8'), path)
  return path


class DenoiseArchive(beam.PTransform):
  """Matched paths -> denoised files; returns the records ('row', line)
  and ('failed', 'path<TAB>reason') of every input, before they are
  written."""

  def __init__(self, settings: Settings,
               model_handler: handler_lib.XdnModelHandler,
               accept: Callable[[str], bool] = lambda path: True,
               checked: bool = False):
    """`checked`: the input is already records of `check_names` (the
    files taken and refused), not paths."""
    super().__init__()
    self._settings = settings
    self._handler = model_handler
    self._accept = accept
    self._checked = checked

  def expand(self, paths):
    settings = self._settings
    if self._checked:
      named = paths  # Records ('path' | 'failed', ...) from `check_names`.
    else:
      named = (paths
               | 'Readable' >> beam.Filter(self._accept)
               | 'ByOutputName' >> beam.Map(
                   lambda p: (settings.guessed_target(p), p))
               # Also spreads the files over the workers: MatchFiles gives
               # them all in one bundle.
               | 'GroupByOutputName' >> beam.GroupByKey()
               | 'OneInputPerOutput' >> beam.FlatMap(_refuse_shared_names))
    decoded = (named
               | 'InputPaths' >> beam.FlatMap(_only, PATH)
               | 'Open' >> fileio.ReadMatches()
               | 'Decode' >> beam.ParDo(Decode(settings)))
    written = (decoded
               | 'Images' >> beam.FlatMap(_only, IMAGE)
               | 'Denoise' >> base.RunInference(
                   base.KeyedModelHandler(self._handler))
               | 'Write' >> beam.ParDo(Write(settings)))
    failures = ((named, decoded, written)
                | 'AllRecords' >> beam.Flatten()
                | 'Failures' >> beam.FlatMap(_only, FAILED_KIND)
                | 'FailureLines' >> beam.Map(_failure_line))
    rows = ((decoded, written)
            | 'RowRecords' >> beam.Flatten()
            | 'Rows' >> beam.FlatMap(_only, ROW)
            | 'RowLines' >> beam.Map(_row_line))
    return rows, failures


def _row_line(line: str) -> Tuple[str, str]:
  return ROW, line


class WriteTables(beam.PTransform):
  """(rows, failures) -> RESULTS.csv and FAILED.txt in `output`, each
  written once, whole, by one worker (both exist, header only or empty,
  when no input reached them). One step ends the graph, as the DaskRunner
  needs (it computes the last step and what it depends on)."""

  def __init__(self, output: str):
    super().__init__()
    self._output = output

  def expand(self, tables):
    rows, failures = tables
    # One empty line of each, so that both files exist for any archive.
    empty = (rows.pipeline
             | 'EachTable' >> beam.Create([(ROW, None), (FAILED_KIND, None)]))
    return ((rows, failures, empty)
            | 'AllLines' >> beam.Flatten()
            | 'ByTable' >> beam.GroupByKey()
            | 'WriteTable' >> beam.Map(_write_table, self._output))


# ------------------------------------------------------------ the command


def input_pattern(text: str) -> Tuple[str, str, bool]:
  """--input -> (Beam glob, root folder of the relative names, whether
  it is a folder: then only radiograph files are taken)."""
  if not text:
    raise errors.UserError("--input is required: a glob such as "
                           "'archive/**/*.dcm' or a folder")
  local = _is_local(text)
  if local:
    text = os.path.abspath(os.path.expanduser(text)) + (
        '/' if text.endswith('/') else '')
  if (local and os.path.isdir(text)) or (not local and text.endswith('/')):
    root = text.rstrip('/')
    return root + '/**', root, True
  glob_at = min([text.index(c) for c in _GLOB if c in text] or [len(text)])
  root = text[:glob_at].rsplit('/', 1)[0] if '/' in text[:glob_at] else ''
  return text, root, False


def _accept_radiographs(path: str) -> bool:
  """A folder's members that xdn reads (extension-less local files by
  their DICOM magic), never a temporary file of a killed run."""
  if atomic.is_temporary(path):
    return False
  if _is_local(path):
    return radiograph_io.is_radiograph_file(path)
  ext = os.path.splitext(path)[1].lower()
  return ext in radiograph_io.IMAGE_EXTENSIONS + radiograph_io.DICOM_EXTENSIONS


def check_options(options: XdnOptions) -> Tuple[Settings, str, bool]:
  """Settings, glob and folder-ness from the options; UserError naming
  the option and what to do."""
  pattern, root, folder = input_pattern(options.input)
  if not options.output:
    raise errors.UserError('--output is required: the folder for the '
                           'denoised files')
  if options.skip_existing and options.overwrite:
    raise errors.UserError('--skip_existing keeps existing outputs and '
                           '--overwrite replaces them; pass one')
  output = options.output
  if _is_local(output):
    output = os.path.abspath(os.path.expanduser(output))
    if os.path.exists(output) and not os.path.isdir(output):
      raise errors.UserError(f'--output={options.output!r} is a file; name '
                             'a folder')
    if _is_local(root) and ('**' in pattern) and os.path.commonpath(
        [os.path.realpath(output), os.path.realpath(root or '/')]) == (
            os.path.realpath(root or '/')):
      raise errors.UserError(
          f'--output={options.output!r} is inside the input folder and '
          f'--input matches files in subfolders, so outputs would be '
          'inputs of the next run; choose an --output outside it')
  model = options.model
  if model != 'pretrained':
    if _is_local(model) and not os.path.isdir(model):
      raise errors.UserError(
          f"--model={model!r} is no folder; name 'pretrained', a folder "
          'exported by xdn-export or a training workdir')
    if _is_local(model) and not (pretrained.available(model) or
                                 os.path.exists(os.path.join(
                                     model, 'config.json'))):
      raise errors.UserError(
          f'--model={model!r} holds neither an exported model nor a '
          'training workdir (config.json); check the path')
  if options.max_batch_size < 1:
    raise errors.UserError('--max_batch_size must be at least 1')
  try:
    matched = FileSystems.match([pattern], limits=[1])[0].metadata_list
  except Exception as e:  # pylint: disable=broad-except  # Beam's own types.
    raise errors.UserError(f'--input={options.input!r} cannot be listed: '
                           f'{image_io.clean_message(e)}') from None
  if not matched:
    raise errors.UserError(f'--input={options.input!r} matches no files; '
                           'check the path (quote globs so the shell leaves '
                           "them alone; ** crosses folders, * does not)")
  return Settings(output, root, options.skip_existing, options.overwrite), \
      pattern, folder


def build_handler(options: XdnOptions) -> handler_lib.XdnModelHandler:
  """The model handler the options describe."""
  try:
    noise_level = told.parse_noise(options.noise, options.read_noise)
  except errors.UserError as e:
    raise errors.UserError(f'--noise: {e}') from None
  strength = (strength_lib.parse(options.strength)
              if options.strength is not None else None)
  return handler_lib.XdnModelHandler(
      options.model, precision=options.precision, strength=strength,
      noise_level=noise_level, checkpoint=options.checkpoint,
      max_batch_size=options.max_batch_size, max_pixels=options.max_pixels,
      compile_cache=not options.no_compile_cache, failures_as_results=True)


def build(pipeline: beam.Pipeline, options: XdnOptions
          ) -> Tuple[str, str, Callable[[str], bool]]:
  """Adds the whole job to `pipeline`: match, denoise, write the files,
  the results table and the dead letters. Returns the output folder, the
  glob and the test of the files it takes (`unaccounted` checks the run
  against them)."""
  settings, pattern, folder = check_options(options)
  handler = build_handler(options)
  accept = _accept_radiographs if folder else _not_temporary
  dask = (options.view_as(pipeline_options.StandardOptions).runner ==
          DASK_RUNNER)
  if dask:
    paths = _dask_inputs(pipeline, options, settings, pattern, accept)
  else:
    paths = (pipeline
             | 'Match' >> fileio.MatchFiles(pattern)
             | 'Paths' >> beam.Map(lambda m: m.path))
  tables = paths | 'Denoise' >> DenoiseArchive(settings, handler, accept,
                                                checked=dask)
  tables | 'WriteTables' >> WriteTables(settings.output)
  return settings.output, pattern, accept


def _not_temporary(path: str) -> bool:
  return not atomic.is_temporary(path)


# The DaskRunner's partitions (tasks) at most: one file each up to this many
# files, then as many files a partition as it takes.
MAX_DASK_PARTITIONS = 10_000


def check_names(paths: Sequence[str], settings: Settings
                ) -> List[Tuple[str, Any]]:
  """The records `_refuse_shared_names` gives, for a list of paths: each
  path whose output name is its own, and a failure for each that shares
  one."""
  by_name: Dict[str, List[str]] = {}
  for path in paths:
    by_name.setdefault(settings.guessed_target(path), []).append(path)
  return [record for item in sorted(by_name.items())
          for record in _refuse_shared_names(item)]


def _dask_inputs(pipeline: beam.Pipeline, options: XdnOptions,
                 settings: Settings, pattern: str,
                 accept: Callable[[str], bool]):
  """The inputs for the DaskRunner, listed and checked here (`check_names`)
  and created in partitions of one file each (up to MAX_DASK_PARTITIONS).

  The runner keeps a step's partitions as its input had them: MatchFiles
  would give all files in one partition, so one task would hold them all.
  Checking the names here also spares the run a shuffle before its first
  step. --dask_npartitions or --dask_partition_size, when given, decide."""
  from apache_beam.runners.dask import dask_runner  # pylint: disable=g-import-not-at-top
  paths = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list
                 if accept(m.path))
  records = check_names(paths, settings)
  # The pipeline's own options: beam.Pipeline keeps a deep copy of those it
  # was given, and the runner reads that copy.
  dask_options = pipeline.options.view_as(dask_runner.DaskOptions)
  if not (dask_options.npartitions or dask_options.partition_size):
    dask_options.partition_size = max(
        1, -(-len(records) // MAX_DASK_PARTITIONS))
  return pipeline | 'Inputs' >> beam.Create(records)


def read_tables(output: str) -> Tuple[List[Dict[str, str]], List[str]]:
  """A finished run's side files: the results rows (dicts by column) and
  the failed inputs."""
  text = _read_bytes(FileSystems.join(output, RESULTS + '.csv')).decode()
  rows = list(csv.DictReader(io.StringIO(text)))
  failed = _read_bytes(FileSystems.join(output, FAILED + '.txt')).decode()
  return rows, [_line_fields(FAILED_KIND, line)[0]
                for line in failed.splitlines() if line]


def count(rows: Sequence[Dict[str, str]], failed: Sequence[str]
          ) -> Dict[str, int]:
  """Inputs written, unchanged, skipped and failed, from the side files
  (`read_tables`), so that it holds on runners without Beam metrics, such
  as the DaskRunner."""
  counts = dict.fromkeys(('written', 'unchanged', 'skipped', 'failures'), 0)
  for row in rows:
    if row['status'] in counts:
      counts[row['status']] += 1
  counts['failures'] = len(failed)
  return counts


def unaccounted(rows: Sequence[Dict[str, str]], failed: Sequence[str],
                pattern: str, accept: Callable[[str], bool]) -> List[str]:
  """The inputs the glob matches that neither the results table nor the
  failures name: a run that lost them (a worker lost where the runner
  could not make up for it) must be run again with --skip_existing."""
  named = {row['input'] for row in rows} | set(failed)
  matched = FileSystems.match([pattern])[0].metadata_list
  return sorted(m.path for m in matched
                if accept(m.path) and m.path not in named)


# Runners Beam does not know by a short name, by the names users type.
DASK_RUNNER = 'apache_beam.runners.dask.dask_runner.DaskRunner'
_RUNNER_NAMES = {'daskrunner': DASK_RUNNER, 'dask': DASK_RUNNER}


def runner_arguments(argv: Sequence[str]) -> list:
  """`argv` with --runner=DaskRunner (or dask) spelled as Beam imports it;
  for Dask, its module is imported first (its options, such as
  --dask_client_address, then parse) or a one-line error names the extra
  that installs it."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--runner='):
      prefix, value = '--runner=', arg.split('=', 1)[1]
    elif i > 0 and argv[i - 1] == '--runner':  # --runner NAME
      prefix, value = '', arg
    else:
      continue
    runner = _RUNNER_NAMES.get(value.lower(), value)
    if runner == DASK_RUNNER:
      errors.require('distributed', 'dask', 'xdn-beam --runner=DaskRunner',
                     'apache-beam[dask]')
      errors.require('apache_beam.runners.dask.dask_runner', 'dask',
                     'xdn-beam --runner=DaskRunner', 'apache-beam[dask]')
    argv[i] = prefix + runner
  return argv


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Builds and runs the pipeline; returns the exit status (1: some input
  failed; see xdn_failed.txt)."""
  options = pipeline_options.PipelineOptions(runner_arguments(
      sys.argv[1:] if argv is None else argv))
  # Every step is a module-level function or class of xdn: nothing of
  # __main__ needs pickling, on any runner.
  options.view_as(pipeline_options.SetupOptions).save_main_session = False
  xdn_options = options.view_as(XdnOptions)
  pipeline = beam.Pipeline(options=options)
  output, pattern, accept = build(pipeline, xdn_options)
  pipeline.run().wait_until_finish()
  rows, failed = read_tables(output)
  counts = count(rows, failed)
  logging.info('xdn-beam: %s written, %s unchanged, %s skipped, %s failed; '
               'results in %s, failures in %s', *counts.values(),
               FileSystems.join(output, RESULTS + '.csv'),
               FileSystems.join(output, FAILED + '.txt'))
  missing = unaccounted(rows, failed, pattern, accept)
  if missing:
    logging.error('xdn-beam: %d inputs have no result (the runner lost '
                  'them, e.g. with a worker), such as %s; run again with '
                  '--skip_existing to finish them', len(missing), missing[0])
    return 1
  return 1 if counts['failures'] else 0


def run(argv: Optional[Sequence[str]] = None) -> None:
  """Console-script entry point (setup.cfg: xdn-beam)."""
  logging.getLogger().setLevel(logging.INFO)
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    status = main(argv)
  except errors.UserError as e:
    raise SystemExit(f'error: {e}') from None
  sys.exit(status)


if __name__ == '__main__':
  run()
