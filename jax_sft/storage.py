"""The one path layer: local paths and `gs://` URLs alike, through etils.epath (as Orbax does).

Everything the trainer reads or writes goes through here, so a run dir, an `init_from` or
a prepared-data dir may live in a bucket. Libraries that only read local files (SentencePiece,
safetensors, ArrayRecord, h5py, gguf) get a local copy from `local_copy`, made once per
remote path and reused.

    >>> str(resolve("runs/x")) == os.path.abspath("runs/x")
    True
    >>> str(resolve("gs://bucket/run"))
    'gs://bucket/run'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike, epath.Path]


def is_remote(path: PathLike) -> bool:
  """True for a URL such as gs://bucket/dir (not a local path)."""
  return "://" in os.fspath(path) if not isinstance(path, epath.Path) else "://" in str(path)


def resolve(path: PathLike) -> epath.Path:
  """An epath.Path: local paths made absolute (never `.../gs:/bucket`), URLs kept as they are."""
  text = os.fspath(path) if not isinstance(path, epath.Path) else str(path)
  if is_remote(text):
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def exists(path: PathLike) -> bool:
  return resolve(path).exists()


def join(path: PathLike, *parts: str) -> str:
  """`path/part/...` as a string, for local paths and URLs alike."""
  return str(resolve(path).joinpath(*parts))


def write_text(path: PathLike, text: str) -> None:
  """Writes `text` whole: to a temporary name, then renamed over `path` (local or remote)."""
  p = resolve(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  tmp = p.parent / f".{p.name}.tmp"
  tmp.write_text(text, encoding="utf-8")
  tmp.replace(p)


def append_text(path: PathLike, text: str) -> None:
  """Appends `text` to `path`. Object stores cannot append: the file is rewritten there."""
  p = resolve(path)
  if not is_remote(p):
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as f:
      f.write(text)
    return
  old = p.read_text(encoding="utf-8") if p.exists() else ""
  write_text(p, old + text)


def read_text(path: PathLike) -> str:
  return resolve(path).read_text(encoding="utf-8")


def cache_dir() -> str:
  """Where remote inputs are copied to be read locally ($JAX_SFT_CACHE or the temp dir)."""
  return os.environ.get("JAX_SFT_CACHE") or os.path.join(tempfile.gettempdir(), "jax_sft_cache")


def mirror_path(path: PathLike) -> str:
  """Where `local_copy` keeps a remote path's contents on this machine."""
  p = resolve(path)
  key = hashlib.blake2b(str(p).encode(), digest_size=8).hexdigest()
  return os.path.join(cache_dir(), key, p.name)


def local_copy(path: PathLike) -> str:
  """A local path with the contents of `path`: itself when local, else a cached copy."""
  p = resolve(path)
  if not is_remote(p):
    return str(p)
  dest = mirror_path(p)
  if os.path.exists(dest):
    return dest
  tmp = dest + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  if p.is_dir():
    _copy_tree(p, epath.Path(tmp))
  else:
    p.copy(epath.Path(tmp))
  os.replace(tmp, dest)
  return dest


def upload(local: str, remote: PathLike) -> None:
  """Copies a local file or tree to `remote` (anything epath writes)."""
  dst = resolve(remote)
  if os.path.isdir(local):
    _copy_tree(epath.Path(local), dst)
  else:
    dst.parent.mkdir(parents=True, exist_ok=True)
    epath.Path(local).copy(dst, overwrite=True)


def _copy_tree(src: epath.Path, dst: epath.Path) -> None:
  dst.mkdir(parents=True, exist_ok=True)
  for child in src.iterdir():
    if child.is_dir():
      _copy_tree(child, dst / child.name)
    else:
      child.copy(dst / child.name, overwrite=True)
