"""Finding the images of the Kaggle chest-xray-pneumonia download.

The download (a zip, or the folder it extracts to) holds
`chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`, plus a nested
duplicate `chest_xray/chest_xray/...`, `__MACOSX/` trees of `._*` AppleDouble
files and `.DS_Store` files. Each image is identified by its last three path
components (split, class, file name) and taken once, from its shallowest path.
Zip members are read in place (never extracted); members whose path is
absolute or contains `..` are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import os
import posixpath
import re
import zipfile

from etils import epath

SPLITS = ('train', 'val', 'test')
CLASSES = ('NORMAL', 'PNEUMONIA')
IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png')
_IGNORED_DIRS = ('__MACOSX',)

# person1_bacteria_1.jpeg, person1_virus_6.jpeg.
_PNEUMONIA_RE = re.compile(r'^(person\d+)_(bacteria|virus)_', re.IGNORECASE)
# IM-0115-0001.jpeg, NORMAL2-IM-0927-0001.jpeg, NORMAL-28501-0001.jpeg.
_NORMAL_RE = re.compile(r'^(.+?)-\d+$')


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """One image of the download.

  Attributes:
    split: official split, 'train', 'val' or 'test'.
    label: 'NORMAL' or 'PNEUMONIA' (the class folder).
    name: file name, e.g. 'IM-0115-0001.jpeg'.
    archive: the zip holding it, or '' for a file on disk.
    path: member name inside `archive`, or the file path on disk.
  """

  split: str
  label: str
  name: str
  archive: str
  path: str

  @property
  def relative_name(self) -> str:
    """Path relative to chest_xray/, e.g. 'train/NORMAL/IM-0115-0001.jpeg'."""
    return f'{self.split}/{self.label}/{self.name}'


def find_images(root: epath.PathLike) -> list[ImageFile]:
  """All images under `root`: a zip, or a folder (extracted or holding zips).

  Returns one `ImageFile` per (split, class, file name), sorted by
  `relative_name`. Files outside the expected layout are ignored.
  """
  root = epath.Path(root)
  candidates = []  # (depth, location, ImageFile)
  if root.is_file():
    candidates += _zip_candidates(root)
  elif root.is_dir():
    for folder, dirnames, filenames in root.walk():
      dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
      for filename in sorted(filenames):
        path = folder / filename
        parts = path.relative_to(root).parts
        if filename.lower().endswith('.zip') and folder == root:
          candidates += _zip_candidates(path)
        elif image := _classify(parts, archive='', path=os.fspath(path)):
          candidates.append((len(parts), image.path, image))
  unique = {}
  for *_, image in sorted(candidates, key=lambda c: c[:2]):
    unique.setdefault(image.relative_name, image)  # Shallowest path wins.
  return [unique[k] for k in sorted(unique)]


def parse_name(label: str, name: str) -> tuple[str, str]:
  """(pathology, patient_id) of an image from its class and file name.

  pathology is 'normal', 'bacteria' or 'virus'. The patient id is the
  'personN' prefix of pneumonia images, or for normal images the name without
  its trailing image number ('IM-0115-0001.jpeg' -> 'IM-0115').
  """
  stem = os.path.splitext(name)[0]
  if label == 'NORMAL':
    match = _NORMAL_RE.match(stem)
    return 'normal', match.group(1) if match else stem
  match = _PNEUMONIA_RE.match(stem)
  if not match:
    raise ValueError(
        f'cannot tell bacterial from viral pneumonia from the file name '
        f'{label}/{name!r}; expected names like person1_bacteria_1.jpeg. '
        'Rename or remove the file.'
    )
  return match.group(2).lower(), match.group(1)


def iter_bytes(
    images: Iterable[ImageFile]) -> Iterator[tuple[ImageFile, bytes]]:
  """Yields (image, file contents), opening each zip once."""
  archives: dict[str, zipfile.ZipFile] = {}
  try:
    for image in images:
      if not image.archive:
        data = epath.Path(image.path).read_bytes()
      else:
        if image.archive not in archives:
          archives[image.archive] = _open_zip(image.archive)
        data = archives[image.archive].read(image.path)
      yield image, data
  finally:
    for archive in archives.values():
      archive.close()


def _open_zip(archive: str) -> zipfile.ZipFile:
  try:
    return zipfile.ZipFile(archive)  # A local file.
  except zipfile.BadZipFile as e:
    raise ValueError(
        f'{archive!r} is not a readable zip ({e}); download it again.'
    ) from e


def _zip_candidates(archive: epath.Path) -> list[tuple[int, str, ImageFile]]:
  archive = os.fspath(archive)
  with _open_zip(archive) as zf:
    names = [info.filename for info in zf.infolist() if not info.is_dir()]
  out = []
  for member in names:
    parts = member.replace('\\', '/').split('/')
    if member.startswith(('/', '\\')) or '..' in parts or ':' in parts[0]:
      continue  # Unsafe path (zip-slip); never used.
    parts = posixpath.normpath('/'.join(parts)).split('/')
    if (image := _classify(parts, archive=archive, path=member)):
      out.append((len(parts), f'{archive}:{member}', image))
  return out


def _classify(parts: Sequence[str], *, archive: str,
              path: str) -> ImageFile | None:
  """The ImageFile for a path split into components, or None to ignore it."""
  if len(parts) < 3 or any(p in _IGNORED_DIRS for p in parts):
    return None
  split, label, name = parts[-3:]
  if name.startswith('.') or not name.lower().endswith(IMAGE_SUFFIXES):
    return None  # .DS_Store, ._* AppleDouble files, non-images.
  if split not in SPLITS or label not in CLASSES:
    return None
  return ImageFile(split=split, label=label, name=name, archive=archive,
                   path=path)
