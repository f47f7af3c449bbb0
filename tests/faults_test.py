"""Fault cases: each bad input gets a one-line error saying what to do, or is
handled, and nothing is lost.

| Case                                   | Test                                        |
|----------------------------------------|---------------------------------------------|
| unknown model / noise / optimizer name | test_bad_config_is_one_line_error           |
| image size the model cannot take       | test_bad_config_is_one_line_error           |
| batch not divisible by the devices     | test_bad_config_is_one_line_error           |
| negative noise level / range           | test_bad_config_is_one_line_error           |
| U-Net on an odd image size: handled    | test_unet_takes_any_image_size              |
| workdir not writable                   | test_run_py_prints_one_line_errors          |
| (the same through `python run.py`)     | test_run_py_prints_one_line_errors          |
| data set name unknown                  | test_missing_manual_dir                     |
| manual_dir missing / not given / empty | test_missing_manual_dir                     |
| corrupt JPEG in the download           | test_kaggle_zip_quirks_and_corrupt_image    |
| __MACOSX/, nested duplicate folders    | test_kaggle_zip_quirks_and_corrupt_image    |
| zip entries with ../ (zip-slip)        | test_kaggle_zip_quirks_and_corrupt_image    |
| RGBA / LA / 16-bit / CMYK / palette    | test_unusual_image_modes_are_decoded        |
| truncated JPEG / garbage bytes         | test_truncated_or_garbage_images_name_file  |
| workdir of another model/config        | test_workdir_of_another_model               |
| checkpoint of another shape, no config | test_checkpoint_of_another_shape            |
| half-written checkpoint                | test_unfinished_checkpoint_is_never_used    |
| NaN batch: stop, keep last good ckpt   | test_nan_batch_stops_then_skip_resumes      |
| NaN batch with skip_nonfinite          | test_nan_batch_stops_then_skip_resumes      |
| denoise: unreadable file, mixed folder | test_denoise_mixed_folder                   |
| denoise: output already exists         | test_denoise_never_overwrites               |
Checkpoints of another device count, SIGKILL, SIGTERM: tests/resume_test.py.
"""

import os
import shutil
import subprocess
import zipfile

import flax
import jax
import numpy as np
from PIL import Image
import pytest

from xdn.configs import default
from tests import data_fixtures
from tests import reliability_utils as ru
from tests.reliability_utils import compile_cache  # pylint: disable=unused-import  # Fixture.
from xdn.data import pipeline
from xdn import errors
from xdn.inference import folder as denoise
from xdn.io import images as image_io
from xdn.io import radiographs as radiograph_io
from xdn import models
from xdn.training import train
from xdn.workdir import checkpoints
from xdn.workdir import state as state_lib


def small_config(data_dir: str = '', **fields):
  config = default.get_config()
  config.data.data_dir = data_dir
  config.model.name = 'autoencoder'
  config.batch_size = 8
  config.num_train_steps = 8
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  config.data.num_eval_images = 8
  config.num_sample_images = 2
  if fields.get('model__name') in models.MODELS:
    config.model = default.model_config(fields.pop('model__name'))
  for dotted, value in fields.items():
    *parents, name = dotted.split('__')
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


def host_state(config, abstract=False):
  """The state dict a run of `config` saves (shapes only if `abstract`)."""
  model = models.create_model(config, bn_axis_name=train.AXIS)
  size = models.fixed_input_size(config) or config.data.image_size
  make = lambda: state_lib.create_train_state(
      config, model, jax.random.key(0), (size, size, 1))
  state = jax.eval_shape(make) if abstract else make()
  return jax.device_get(flax.serialization.to_state_dict(state))


# --------------------------------------------------------------- config


@pytest.mark.parametrize('fields,message', [
    (dict(model__name='resnet'), "unknown model.name 'resnet'"),
    (dict(noise__kind='gausian'), "unknown noise kind 'gausian'"),
    (dict(optimizer__name='adagrad'), "unknown optimizer.name 'adagrad'"),
    (dict(data__image_size=128), 'set --config.data.image_size=64'),
    (dict(batch_size=6), 'positive multiple of the 4 devices'),
    (dict(batch_size=0), 'positive multiple'),
    (dict(noise__level=-5.0), 'noise level must be >= 0'),
    (dict(noise__max_level=-1.0), 'must be >= 0'),
    (dict(num_train_steps=-1), 'num_train_steps must be > 0'),
], ids=lambda v: str(v)[:40])
def test_bad_config_is_one_line_error(tmp_path, fields, message):
  config = small_config(str(tmp_path / 'tfds'), **fields)
  with pytest.raises(ValueError, match=message) as e:
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert '\n' not in str(e.value)
  assert not os.path.exists(tmp_path / 'tfds')  # Checked before any work.


def test_unet_takes_any_image_size():
  config = small_config(model__name='unet', model__depth=2,
                        model__base_width=2, data__image_size=22)
  train.check_config(config, 4)
  model = models.create_model(config)
  state = host_state(config, abstract=True)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                       {'params': state['params'],
                        'batch_stats': state['batch_stats']},
                       jax.ShapeDtypeStruct((1, 22, 22, 1), np.float32))
  assert out.shape == (1, 22, 22, 1)


def test_run_py_prints_one_line_errors(tmp_path, compile_cache):
  """What the user sees: `error: ...` on the last line, exit status 1."""
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  cases = [
      (str(blocker / 'run'), ['--config.model.name=resnet'],
       "error: unknown model.name 'resnet'"),
      (str(blocker / 'run'), [], 'error: cannot write to workdir'),
  ]
  for workdir, overrides, message in cases:
    result = subprocess.run(
        ru.command(workdir, str(tmp_path / 'tfds'), *overrides), cwd=ru.REPO,
        env=ru.env(1, compile_cache), capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(message), result.stderr[-2000:]
    assert 'Traceback' not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_read_only_workdir(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  workdir.chmod(0o500)
  with pytest.raises(errors.UserError, match='cannot write to workdir'):
    train.train_and_evaluate(small_config(str(tmp_path / 'tfds')),
                             str(workdir))


# ----------------------------------------------------------------- data


@pytest.mark.parametrize('name,manual_dir,error,message', [
    ('chest_xray_typo', None, ValueError, 'not a known TFDS data set'),
    ('chest_xray/64', '', ValueError, 'needs the Kaggle download'),
    ('chest_xray/64', 'missing.zip', FileNotFoundError, 'missing or empty'),
    ('chest_xray/64', 'empty', FileNotFoundError, 'missing or empty'),
])
def test_missing_manual_dir(tmp_path, name, manual_dir, error, message):
  (tmp_path / 'empty').mkdir()
  config = small_config(str(tmp_path / 'tfds'), data__name=name)
  if manual_dir:
    config.data.manual_dir = str(tmp_path / manual_dir)
  with pytest.raises(error, match=message) as e:
    pipeline.prepare(config.data)
  assert 'manual_dir' in str(e.value) or 'chest_xray_sample' in str(e.value)


def test_kaggle_zip_quirks_and_corrupt_image(tmp_path):
  bad = 'train/NORMAL/IM-0117-0001.jpeg'
  folder = tmp_path / 'downloads' / 'inner'
  folder.mkdir(parents=True)
  archive = folder / 'archive.zip'
  images = data_fixtures.make_kaggle_zip(archive, corrupt=bad)
  with zipfile.ZipFile(archive) as zf:  # Has zip-slip members.
    assert set(data_fixtures.UNSAFE_MEMBERS) <= set(zf.namelist())
  before = sorted(str(p) for p in tmp_path.rglob('*'))
  config = small_config(str(tmp_path / 'tfds'), data__name='chest_xray/64',
                        data__manual_dir=str(archive),
                        data__train_split='train', data__eval_split='val')
  with pytest.raises(image_io.ImageDecodeError) as e:
    pipeline.prepare(config.data)
  assert 'IM-0117-0001.jpeg' in str(e.value)
  assert 'skip_corrupt' in str(e.value)
  assert isinstance(e.value, ValueError)  # run.py: one 'error:' line.

  config.data.data_dir = str(tmp_path / 'tfds_skip')
  config.data.skip_corrupt = True
  pipeline.prepare(config.data)
  total = sum(pipeline.split_size(config.data, s)
              for s in ('train', 'val', 'test'))
  # Each image once (no __MACOSX/ or nested duplicates), the corrupt one
  # skipped, the ../ members never read.
  assert total == len(images) - 1
  # Nothing written next to or above the zip: it is read in place.
  after = sorted(str(p) for p in tmp_path.rglob('*')
                 if 'tfds' not in p.relative_to(tmp_path).parts[0])
  assert after == [p for p in before if 'tfds' not in p]
  assert not any('IM-999' in f for _, _, files in os.walk(tmp_path.parent)
                 for f in files)


@pytest.mark.parametrize('mode,dtype', [
    ('RGBA', np.uint8), ('LA', np.uint8), ('I;16', np.uint16),
    ('CMYK', np.uint8), ('P', np.uint8), ('1', np.uint8),
])
def test_unusual_image_modes_are_decoded(tmp_path, mode, dtype):
  pixels = (np.arange(24 * 20).reshape(24, 20) % 251).astype(np.uint8)
  if mode == 'I;16':
    image = Image.fromarray(pixels.astype(np.uint16) * 257)
  else:
    image = Image.fromarray(pixels).convert(mode)
  path = tmp_path / ('x.jpg' if mode == 'CMYK' else 'x.png')
  image.save(path)
  radiograph = radiograph_io.read_radiograph(str(path))
  assert radiograph.pixels.shape == (24, 20)
  assert radiograph.pixels.dtype == np.float32
  assert 0.0 <= radiograph.pixels.min() <= radiograph.pixels.max() <= 1.0
  assert image_io.read_grayscale(path).dtype == dtype


@pytest.mark.parametrize('data', [
    data_fixtures.jpeg(0)[:300], b'\xff\xd8garbage', b'', b'GIF89a...',
], ids=['truncated_jpeg', 'garbage_jpeg', 'empty', 'bad_gif'])
def test_truncated_or_garbage_images_name_file(tmp_path, data):
  path = tmp_path / 'scan.jpeg'
  path.write_bytes(data)
  with pytest.raises(image_io.ImageDecodeError, match='scan.jpeg') as e:
    image_io.read_grayscale(path)
  assert '\n' not in str(e.value)


# ---------------------------------------------------------- checkpoints


def test_workdir_of_another_model(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  checkpoints.write_config(workdir, small_config(model__name='unet'))
  with pytest.raises(ValueError, match='different model') as e:
    train.train_and_evaluate(small_config(str(tmp_path / 'tfds')), workdir)
  assert 'use a new --workdir' in str(e.value)


def test_fields_that_change_no_shape_do_not_block_a_resume(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  saved = small_config(model__name='unet', model__depth=2)
  checkpoints.write_config(workdir, saved)
  changed = small_config(model__name='unet', model__depth=2,
                         model__residual=False, model__dtype='bfloat16',
                         noise__level=50.0, optimizer__learning_rate=1e-4)
  checkpoints.check_compatible(workdir, changed)  # No error.
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save(2, host_state(saved))
  ckpt.wait()
  restored = ckpt.restore(host_state(changed, abstract=True))
  assert int(restored['step']) == 0  # host_state is a fresh state.
  with pytest.raises(ValueError, match='does not match this model'):
    ckpt.restore(host_state(small_config(model__name='unet', model__depth=3),
                            abstract=True))
  ckpt.close()


@pytest.fixture(scope='module')
def autoencoder_checkpoint(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('autoencoder'))
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save(2, host_state(small_config()))
  ckpt.close()
  return workdir


@pytest.mark.parametrize('fields', [
    dict(model__name='unet', model__depth=1, model__base_width=2),
    dict(model__latent_dim=32),  # Same names, other shapes.
    dict(optimizer__grad_clip_norm=1.0),  # Another optimizer state.
], ids=['unet', 'latent_dim', 'grad_clip'])
def test_checkpoint_of_another_shape(autoencoder_checkpoint, fields):
  """Without config.json to check first, restoring still fails clearly."""
  ckpt = checkpoints.Checkpointer(autoencoder_checkpoint)
  ckpt.restore(host_state(small_config(), abstract=True))  # The right one.
  with pytest.raises(ValueError, match='does not match this model') as e:
    ckpt.restore(host_state(small_config(**fields), abstract=True))
  assert '\n' not in str(e.value) and 'use a new --workdir' in str(e.value)
  ckpt.close()


def test_unfinished_checkpoint_is_never_used(tmp_path):
  state = host_state(small_config())
  ckpt = checkpoints.Checkpointer(str(tmp_path), cleanup_tmp=True)
  ckpt.save(2, state)
  ckpt.save(4, jax.tree.map(lambda x: x + 1, state))
  ckpt.close()
  # What a kill during the save of step 6 leaves: orbax's temporary folder,
  # partly written.
  folder = tmp_path / 'checkpoints'
  partial = folder / '6.orbax-checkpoint-tmp'
  shutil.copytree(folder / '4', partial)
  for path in sorted(p for p in partial.rglob('*') if p.is_file())[::2]:
    path.unlink()
  reader = checkpoints.Checkpointer(str(tmp_path))
  assert reader.latest_step() == 4
  restored = reader.restore(state)
  np.testing.assert_array_equal(
      restored['params']['decoder']['dense']['kernel'],
      state['params']['decoder']['dense']['kernel'] + 1)
  reader.close()
  assert partial.exists()  # Readers (evaluate, denoise) leave it alone...
  writer = checkpoints.Checkpointer(str(tmp_path), cleanup_tmp=True)
  writer.close()
  assert not partial.exists()  # ...a training run removes it.
  assert ru.finished_steps(str(tmp_path)) == [2, 4]


# ------------------------------------------------------------ numerics


def test_nan_batch_stops_then_skip_resumes(tmp_path, sample_data_dir,
                                           monkeypatch):
  poisoned_step = 5  # As numbered in logs and checkpoints (1-based).
  real_batches = pipeline.train_batches

  def poisoned(data_config, *, start_step=0, **kwargs):
    for step, batch in enumerate(
        real_batches(data_config, start_step=start_step, **kwargs),
        start_step + 1):
      if step == poisoned_step:
        batch = batch.copy()
        batch[0, 0, 10, 10, 0] = np.nan
      yield batch

  monkeypatch.setattr(pipeline, 'train_batches', poisoned)
  workdir = str(tmp_path / 'run')
  config = small_config(sample_data_dir, batch_size=4)
  with pytest.raises(errors.UserError, match="non-finite") as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert 'non-finite loss or gradient at step 5' in message
  assert 'last good checkpoint (step 4) is kept' in message
  assert '--config.skip_nonfinite=True' in message
  assert ru.finished_steps(workdir) == [2, 4]  # Nothing after the fault.
  good = ru.saved_state(workdir)
  assert all(np.isfinite(v).all() for v in good.values())

  config.skip_nonfinite = True  # The same run, resumed, skipping the step.
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 8
  assert int(state.nonfinite_steps) == 1
  assert int(state.first_nonfinite_step) + 1 == poisoned_step
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  assert ru.finished_steps(workdir) == [4, 6, 8]


# -------------------------------------------------------------- denoise


class IdentityDenoiser:
  fixed_size, name, step = None, 'identity', 0

  def __call__(self, images):
    return images


def test_denoise_mixed_folder(tmp_path, caplog):
  src = tmp_path / 'in'
  (src / 'sub').mkdir(parents=True)
  pixels = (np.arange(30 * 20).reshape(30, 20) % 200).astype(np.uint8)
  Image.fromarray(pixels).save(src / 'a.png')
  Image.fromarray(pixels).convert('RGBA').save(src / 'sub' / 'rgba.png')
  Image.fromarray(pixels.astype(np.uint16) * 300).save(src / 'deep.png')
  (src / 'cut.jpeg').write_bytes(data_fixtures.jpeg(1)[:200])
  (src / 'notes.txt').write_text('not an image')
  (src / '.DS_Store').write_bytes(b'Bud1')
  unreadable = src / 'locked.png'
  Image.fromarray(pixels).save(unreadable)
  unreadable.chmod(0)
  expect_failed = 1 + (os.geteuid() != 0)  # Root reads anything.
  with caplog.at_level('ERROR'):
    failed = denoise.denoise_files(IdentityDenoiser(), [str(src)],
                                   str(tmp_path / 'out'))
  assert failed == expect_failed
  errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
  assert len(errors) == expect_failed
  assert all('\n' not in m for m in errors)
  assert any('cut.jpeg' in m for m in errors)
  out = tmp_path / 'out'
  assert sorted(str(p.relative_to(out)) for p in out.rglob('*.png')) == (
      ['a.png', 'deep.png'] + (['locked.png'] if expect_failed == 1 else [])
      + ['sub/rgba.png'])
  assert np.asarray(Image.open(out / 'deep.png')).dtype in (np.uint16,
                                                            np.int32)
  assert not list(out.rglob('*.tmp'))


def test_denoise_never_overwrites(tmp_path):
  pixels = np.full((16, 16), 100, np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'a.png')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'a.png').write_bytes(b'precious')
  assert denoise.denoise_files(IdentityDenoiser(), [str(tmp_path / 'a.png')],
                               str(out)) == 1
  assert (out / 'a.png').read_bytes() == b'precious'
  assert denoise.denoise_files(IdentityDenoiser(), [str(tmp_path / 'a.png')],
                               str(out), overwrite=True) == 0
  np.testing.assert_array_equal(np.asarray(Image.open(out / 'a.png')), pixels)
  # --out is the input folder: refused even with --overwrite.
  assert denoise.denoise_files(IdentityDenoiser(), [str(tmp_path / 'a.png')],
                               str(tmp_path), overwrite=True) == 1
