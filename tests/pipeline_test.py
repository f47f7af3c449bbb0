"""Tests for xdn.data.pipeline on the embedded chest_xray_sample."""

import itertools
import threading

import numpy as np
import pytest

from xdn.data import pipeline
from xdn.data import prefetch
from tests import data_fixtures
from tests.data_fixtures import sample_dir  # pylint: disable=unused-import


def _batches(config, count, **kwargs):
  kwargs = dict(dict(global_batch_size=8, num_devices=2, seed=0), **kwargs)
  iterator = pipeline.train_batches(config, **kwargs)
  try:
    return list(itertools.islice(iterator, count))
  finally:
    iterator.close()


def test_prepare_logs_and_split_sizes(sample_dir):
  config = data_fixtures.data_config(sample_dir)
  pipeline.prepare(config)
  sizes = {s: pipeline.split_size(config, s)
           for s in ('train', 'validation', 'test')}
  assert sizes == {'train': 619, 'validation': 48, 'test': 133}


def test_train_batch_shape_dtype_range(sample_dir):
  config = data_fixtures.data_config(sample_dir, image_size=48)
  for batch in _batches(config, 3, global_batch_size=12, num_devices=3):
    assert batch.shape == (3, 4, 48, 48, 1)
    assert batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    assert batch.std() > 0.05


def test_epochs_are_permutations(sample_dir):
  config = data_fixtures.data_config(sample_dir, prefetch=0)
  n = pipeline.split_size(config, 'train')
  # 619 is prime, so batches of 16 straddle epoch boundaries.
  batches = _batches(config, (2 * n) // 16, global_batch_size=16, num_devices=1)
  flat = np.concatenate([b.reshape(16, -1) for b in batches])
  first_epoch = np.unique(flat[:n], axis=0)
  assert len(first_epoch) == n  # Every image exactly once per epoch.


def test_resume_reproduces_batches(sample_dir):
  config = data_fixtures.data_config(sample_dir, random_crop=True, flip=True,
                                     rot90=True, image_size=40)
  straight = _batches(config, 90, global_batch_size=16, num_devices=2, seed=7)
  resumed = _batches(config, 10, global_batch_size=16, num_devices=2, seed=7,
                     start_step=80)
  for a, b in zip(straight[80:], resumed):
    np.testing.assert_array_equal(a, b)
  other_seed = _batches(config, 1, global_batch_size=16, num_devices=2, seed=8)
  assert not np.array_equal(straight[0], other_seed[0])


def test_processes_take_disjoint_halves(sample_dir):
  config = data_fixtures.data_config(sample_dir, flip=True, rot90=True)
  whole = _batches(config, 3, global_batch_size=16, num_devices=2)
  halves = [_batches(config, 3, global_batch_size=16, num_devices=2,
                     process_index=p, process_count=2) for p in (0, 1)]
  for step in range(3):
    assert halves[0][step].shape == (2, 4, 64, 64, 1)
    joined = np.concatenate([h[step].reshape(8, -1) for h in halves])
    np.testing.assert_array_equal(joined, whole[step].reshape(16, -1))


def test_flips_change_images_but_keep_pixel_values(sample_dir):
  plain = _batches(data_fixtures.data_config(sample_dir), 2)
  flipped = _batches(data_fixtures.data_config(sample_dir, flip=True), 2)
  rotated = _batches(data_fixtures.data_config(sample_dir, rot90=True), 2)
  for a, b, c in zip(plain, flipped, rotated):
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    for x, y, z in zip(a.reshape(8, -1), b.reshape(8, -1), c.reshape(8, -1)):
      np.testing.assert_array_equal(np.sort(x), np.sort(y))
      np.testing.assert_array_equal(np.sort(x), np.sort(z))


def test_random_crop_differs_from_centre_crop(sample_dir):
  centre = _batches(data_fixtures.data_config(sample_dir, image_size=32), 1)
  random = _batches(data_fixtures.data_config(
      sample_dir, image_size=32, random_crop=True), 1)
  assert centre[0].shape == random[0].shape == (2, 4, 32, 32, 1)
  assert not np.array_equal(centre[0], random[0])


def test_eval_images_deterministic_capped_and_centred(sample_dir):
  config = data_fixtures.data_config(sample_dir)
  full = pipeline.eval_images(config, 'validation')
  assert full.shape == (48, 64, 64, 1) and full.dtype == np.float32
  again = pipeline.eval_images(config, 'validation')
  np.testing.assert_array_equal(full, again)
  config.num_eval_images = 10
  config.image_size = 32
  capped = pipeline.eval_images(config, 'validation')
  np.testing.assert_array_equal(capped, full[:10, 16:48, 16:48])


def test_errors(sample_dir):
  config = data_fixtures.data_config(sample_dir)
  with pytest.raises(ValueError, match='multiple of 6'):
    pipeline.train_batches(config, global_batch_size=8, num_devices=3, seed=0,
                           process_count=2)
  with pytest.raises(ValueError, match=r"available splits: \['test', 'train'"):
    pipeline.eval_images(config, 'nonexistent')
  with pytest.raises(ValueError, match='smaller than data.image_size=128'):
    pipeline.train_batches(
        data_fixtures.data_config(sample_dir, image_size=128),
        global_batch_size=8, num_devices=1, seed=0)


def test_kaggle_without_manual_dir_says_what_to_do(tmp_path):
  config = data_fixtures.data_config(tmp_path, name='chest_xray/64')
  with pytest.raises(ValueError, match='--config.data.manual_dir=') as e:
    pipeline.prepare(config)
  assert 'kaggle.com' in str(e.value) and '\n' not in str(e.value)


def test_full_resolution_uses_random_access(tmp_path):
  data_fixtures.make_kaggle_zip(tmp_path / 'archive.zip', shape=(48, 40))
  config = data_fixtures.data_config(
      tmp_path / 'tfds', name='chest_xray/full', image_size=32,
      manual_dir=str(tmp_path / 'archive.zip'), train_split='train_main',
      random_crop=True, flip=True)
  pipeline.prepare(config)
  batches = _batches(config, 3, global_batch_size=4, num_devices=2)
  assert batches[0].shape == (2, 2, 32, 32, 1)
  resumed = _batches(config, 1, global_batch_size=4, num_devices=2,
                     start_step=2)
  np.testing.assert_array_equal(batches[2], resumed[0])
  test = pipeline.eval_images(config, 'test')
  assert test.shape == (4, 32, 32, 1) and test.std() > 0.05
  config.image_size = 44  # Wider than the 40-pixel-wide images.
  with pytest.raises(ValueError, match='smaller than data.image_size=44'):
    pipeline.eval_images(config, 'test')


def test_prefetch_thread_stops_on_close(sample_dir):
  config = data_fixtures.data_config(sample_dir, prefetch=3)
  iterator = pipeline.train_batches(config, global_batch_size=8,
                                    num_devices=1, seed=0)
  next(iterator)
  assert any(t.name == 'xdn-prefetch' for t in threading.enumerate())
  iterator.close()
  assert not any(t.name == 'xdn-prefetch' and t.is_alive()
                 for t in threading.enumerate())


def test_prefetch_propagates_errors_and_finishes():
  def make(step):
    if step == 3:
      raise RuntimeError('boom at 3')
    return np.full((1,), step)

  for depth in (0, 2):
    assert [int(b[0]) for b in prefetch.prefetch(make, range(3), depth)] == [
        0, 1, 2]
    with pytest.raises(RuntimeError, match='boom at 3'):
      list(prefetch.prefetch(make, range(5), depth))
