"""Tests for the TFDS builders in xdn.data: chest_xray and chest_xray_sample."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

import xdn.data  # pylint: disable=unused-import  # Registers the builders.
from xdn.data.chest_xray import kaggle_files
from xdn.data import patient_split
from xdn.io import images as image_io
from tests import data_fixtures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build(name, data_dir, manual_dir, **builder_kwargs):
  builder = tfds.builder(name, data_dir=str(data_dir), **builder_kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return builder


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


@pytest.fixture(scope='module')
def kaggle_zip(tmp_path_factory):
  folder = tmp_path_factory.mktemp('kaggle')
  images = data_fixtures.make_kaggle_zip(folder / 'archive.zip')
  return folder / 'archive.zip', images


@pytest.fixture(scope='module')
def built_from_zip(kaggle_zip, tmp_path_factory):
  path, _ = kaggle_zip
  # TFDS's manual_dir is a folder: the one holding the zip.
  return _build('chest_xray/64', tmp_path_factory.mktemp('tfds'), path.parent)


def test_zip_file_as_tfds_manual_dir_says_to_pass_its_folder(kaggle_zip,
                                                             tmp_path):
  path, _ = kaggle_zip
  with pytest.raises(FileNotFoundError, match='the folder holding the zip'):
    _build('chest_xray/64', tmp_path / 'tfds', path)


def test_builder_names():
  assert 'chest_xray' in tfds.list_builders()
  assert 'chest_xray_sample' in tfds.list_builders()
  configs = [c.name for c in tfds.builder_cls('chest_xray').BUILDER_CONFIGS]
  assert configs == ['64', '128', '256', 'full']


def test_zip_counts_and_dedup(built_from_zip, kaggle_zip):
  _, images = kaggle_zip
  builder = built_from_zip
  splits = {name: split.num_examples
            for name, split in builder.info.splits.items()}
  for split in ('train', 'val', 'test'):
    expected = sorted(n for n in images if n.startswith(split + '/'))
    examples = _examples(builder, split)
    names = sorted(e['filename'].decode() for e in examples)
    assert names == expected  # Each image once despite the nested copy.
    assert splits[split] == len(expected)
  assert splits['train_main'] + splits['validation'] == splits['train']


def test_zip_features(built_from_zip):
  features = built_from_zip.info.features
  assert features['image'].shape == (64, 64, 1)
  for e in _examples(built_from_zip, 'train'):
    assert e['image'].shape == (64, 64, 1) and e['image'].dtype == np.uint8
    assert e['image'].std() > 5  # Real content, resized not blanked.
    name = e['filename'].decode()
    label = features['label'].int2str(e['label'])
    pathology = features['pathology'].int2str(e['pathology'])
    assert name.split('/')[1] == label
    expected = ('normal' if label == 'NORMAL' else
                'virus' if 'virus' in name else 'bacteria')
    assert pathology == expected
  by_name = {e['filename'].decode(): e['patient_id'].decode()
             for e in _examples(built_from_zip, 'train')}
  assert by_name['train/NORMAL/IM-0115-0002.jpeg'] == 'IM-0115'
  assert by_name['train/NORMAL/NORMAL2-IM-0927-0001.jpeg'] == 'NORMAL2-IM-0927'
  assert by_name['train/PNEUMONIA/person1_virus_6.jpeg'] == 'person1'


def test_unsafe_zip_members_never_used(built_from_zip, kaggle_zip):
  path, _ = kaggle_zip
  names = [e['filename'].decode()
           for split in ('train', 'val', 'test')
           for e in _examples(built_from_zip, split)]
  assert not any('999' in n for n in names)
  # Nothing was extracted next to the zip or above it.
  for top in (path.parent, path.parent.parent):
    for _, _, files in os.walk(top):
      assert not any(f.startswith('IM-999') for f in files)


def test_validation_is_a_patient_split_of_train(built_from_zip):
  def patients(split):
    return {e['patient_id'] for e in _examples(built_from_zip, split)}

  def names(split):
    return {e['filename'] for e in _examples(built_from_zip, split)}

  assert patients('train_main').isdisjoint(patients('validation'))
  assert patients('validation')
  assert names('train_main') | names('validation') == names('train')
  assert names('train_main').isdisjoint(names('validation'))


def test_corrupt_jpeg_stops_build_or_is_skipped(tmp_path):
  bad = 'test/NORMAL/IM-0001-0001.jpeg'
  folder = tmp_path / 'downloads'
  folder.mkdir()
  images = data_fixtures.make_kaggle_zip(folder / 'chest-xray-pneumonia.zip',
                                         corrupt=bad)
  # manual_dir is a folder holding the zip.
  with pytest.raises(image_io.ImageDecodeError, match='IM-0001-0001.jpeg') as e:
    _build('chest_xray/full', tmp_path / 'tfds1', folder)
  assert 'skip_corrupt=True' in str(e.value)
  builder = _build('chest_xray/full', tmp_path / 'tfds2', folder,
                   skip_corrupt=True)
  names = [e['filename'].decode() for e in _examples(builder, 'test')]
  assert bad not in names
  assert len(names) == sum(n.startswith('test/') for n in images) - 1
  # 'full' keeps the original size.
  assert {e['image'].shape for e in _examples(builder, 'test')} == {(48, 40, 1)}


def test_empty_manual_dir_raises_with_instructions(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='kaggle.com/datasets'):
    _build('chest_xray/64', tmp_path / 'tfds', tmp_path / 'empty')


def test_manual_dir_without_images_raises_with_instructions(tmp_path):
  (tmp_path / 'wrong' / 'photos').mkdir(parents=True)
  (tmp_path / 'wrong' / 'photos' / 'cat.jpeg').write_bytes(
      data_fixtures.jpeg(0))
  with pytest.raises(FileNotFoundError, match='no complete Kaggle download'):
    _build('chest_xray/64', tmp_path / 'tfds', tmp_path / 'wrong')


def test_parse_name():
  assert kaggle_files.parse_name('NORMAL', 'IM-0115-0001.jpeg') == (
      'normal', 'IM-0115')
  assert kaggle_files.parse_name('NORMAL', 'NORMAL-28501-0001.jpeg') == (
      'normal', 'NORMAL-28501')
  assert kaggle_files.parse_name('PNEUMONIA', 'person12_virus_6.jpeg') == (
      'virus', 'person12')
  with pytest.raises(ValueError, match='weird.jpeg'):
    kaggle_files.parse_name('PNEUMONIA', 'weird.jpeg')


def test_assign_patients_is_stable_and_complete():
  ids = [f'p{i}' for i in range(100)]
  fractions = {'train': 0.7, 'validation': 0.1, 'test': 0.2}
  split = patient_split.assign_patients(ids, fractions)
  assert split == patient_split.assign_patients(reversed(ids), fractions)
  counts = {s: sum(v == s for v in split.values()) for s in fractions}
  assert counts == {'train': 70, 'validation': 10, 'test': 20}
  assert patient_split.stable_hash('p1') == 'ec6ef230f1828039ee794566b9c58adc'


def test_sample_loads_in_fresh_process(tmp_path):
  """A user's view: import xdn.data, tfds.load with an empty data_dir."""
  script = textwrap.dedent(f"""
      import json
      import numpy as np
      import tensorflow_datasets as tfds
      import xdn.data
      out = {{}}
      for split in ('train', 'validation', 'test'):
        ds = tfds.load('chest_xray_sample', split=split,
                       data_dir={str(tmp_path)!r})
        examples = list(tfds.as_numpy(ds))
        images = np.stack([e['image'] for e in examples])
        out[split] = dict(
            shape=list(images.shape), dtype=str(images.dtype),
            min_std=float(min(e['image'].std() for e in examples)),
            patients=sorted({{e['patient_id'].decode() for e in examples}}))
      print('RESULT', json.dumps(out))
  """)
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  out = json.loads(line[len('RESULT '):])
  sizes = {'train': 619, 'validation': 48, 'test': 133}
  for split, result in out.items():
    assert result['shape'] == [sizes[split], 64, 64, 1]
    assert result['dtype'] == 'uint8'
    assert result['min_std'] > 5  # Every image is a real radiograph.
  patients = [set(r['patients']) for r in out.values()]
  assert sum(map(len, patients)) == len(set().union(*patients)) == 221
