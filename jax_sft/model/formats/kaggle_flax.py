"""Kaggle Flax Gemma checkpoints (Orbax), read straight into their sharded place, and written back.

Google released the Flax Gemma weights as an Orbax PyTree whose top level is flat:
`{'transformer/layer_0/attn/q_einsum': {'w': array}, 'transformer/final_norm': {'scale': array}}`
(google-deepmind/gemma `gm/ckpts/_checkpoint.py` calls it the FLAT layout; tunix
`models/gemma/params.py` reads the same). Our param tree is that layout nested, without
`transformer/`. The gemma library's own `save_params` writes the NESTED layout (`mlp/linear`
as a bare array, no `w`); both are read here. Gemma 7B stores `attn/qkv_einsum/w`
(3, N, D, H) instead of q and kv; it is split after restore.

Each array is restored by Orbax with an `ArrayRestoreArgs(sharding=..., dtype=...)`, so
tensorstore reads each device's slice into that device: the model is never gathered on
one device nor held twice in host memory.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec

from jax_sft.config import ModelConfig
from jax_sft.model.formats import shapes

_PREFIX = "transformer/"
_MARKERS = ("_METADATA", "manifest.ocdbt", "checkpoint", "_CHECKPOINT_METADATA")


def is_orbax_dir(path: str) -> bool:
  """True if `path` (or its Kauldron `default/`) looks like an Orbax checkpoint directory."""
  return os.path.isdir(path) and any(
      os.path.exists(os.path.join(path, m)) for m in _MARKERS)


def resolve_dir(path: str) -> str:
  """The directory Orbax should open: `path`, its Kauldron `default/`, or the one checkpoint inside.

  A Kaggle model download puts the checkpoint one level down (`gemma2-2b-it/` next to
  `tokenizer.model`); a Kauldron training checkpoint keeps the params in `default/`.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: not a directory")
  default = os.path.join(path, "default")
  if is_orbax_dir(default) and not os.path.exists(os.path.join(path, "_METADATA")):
    return default
  if is_orbax_dir(path):
    return path
  inner = [os.path.join(path, d) for d in sorted(os.listdir(path))
           if is_orbax_dir(os.path.join(path, d))]
  if len(inner) == 1:
    return inner[0]
  raise FileNotFoundError(
      f"{path}: no Orbax checkpoint here (looked for {', '.join(_MARKERS)})"
      + (f"; several inside: {inner}" if inner else ""))


def _our_path(keys: tuple[str, ...]) -> str:
  """Checkpoint key tuple -> our '/'-joined path, for the FLAT and NESTED layouts."""
  path = "/".join(keys)
  if path.startswith(_PREFIX):
    path = path[len(_PREFIX):]
  if path.endswith(("/mlp/linear", "/mlp/gating_einsum")):  # NESTED drops the `w`
    path += "/w"
  return path


def _tree_items(tree: Any, keys: tuple[str, ...] = ()):
  """Yields (key tuple, leaf) of a nested dict."""
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _tree_items(v, keys + (k,))
    else:
      yield keys + (k,), v


def _set(tree: dict, keys: tuple[str, ...], value: Any) -> None:
  for k in keys[:-1]:
    tree = tree.setdefault(k, {})
  tree[keys[-1]] = value


def read_metadata(path: str) -> dict[tuple[str, ...], Any]:
  """{checkpoint key tuple: orbax ArrayMetadata} of the checkpoint at `path` (nothing is read)."""
  meta = ocp.PyTreeCheckpointer().metadata(path)
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  if not isinstance(tree, dict):
    raise ValueError(f"{path}: Orbax metadata is not a dict of arrays ({type(tree).__name__})")
  return dict(_tree_items(tree))


def _found_shapes(meta: dict[tuple[str, ...], Any]) -> dict[str, tuple[int, ...]]:
  """Our path -> shape the checkpoint will yield, with `qkv_einsum` seen as its q and kv."""
  found = {}
  for keys, m in meta.items():
    path, shape = _our_path(keys), tuple(m.shape)
    if path.endswith("attn/qkv_einsum/w") and len(shape) == 4:
      base = path[: -len("qkv_einsum/w")]
      found[base + "q_einsum/w"] = shape[1:]
      found[base + "kv_einsum/w"] = (2,) + shape[1:]
    else:
      found[path] = shape
  return found


def _with_leading_axis(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
  """q's sharding for the stacked (3, N, D, H) qkv array: the new axis unsharded."""
  if isinstance(sharding, NamedSharding):
    return NamedSharding(sharding.mesh, PartitionSpec(None, *sharding.spec))
  return sharding


def load_kaggle_flax(path: str, cfg: ModelConfig, shardings: Any = None,
                     dtype: Any = None) -> shapes.Params:
  """Reads a Kaggle Flax Gemma (Orbax) checkpoint into our param tree, each array on its sharding.

  `shardings`: None, one Sharding, or a tree of Shardings like the params; `dtype` defaults
  to `cfg.param_dtype`. Raises CheckpointMismatch naming the first parameter that does not fit.
  """
  path = resolve_dir(os.path.abspath(os.fspath(path)))
  meta = read_metadata(path)
  shapes.check_shapes(_found_shapes(meta), cfg, source=path)
  sharding_of = shapes.sharding_lookup(shardings)
  dtype = shapes.resolve_dtype(cfg, dtype)

  restore_args, item = {}, {}
  for keys, m in meta.items():
    ours = _our_path(keys)
    if ours.endswith("attn/qkv_einsum/w"):
      sharding = _with_leading_axis(sharding_of(ours.replace("qkv_einsum", "q_einsum")))
    else:
      sharding = sharding_of(ours)
    _set(restore_args, keys, ocp.ArrayRestoreArgs(
        sharding=sharding, dtype=dtype, global_shape=tuple(m.shape)))
    _set(item, keys, 0)
  restored = ocp.PyTreeCheckpointer().restore(
      path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args))

  flat = {}
  for keys, array in _tree_items(restored):
    ours = _our_path(keys)
    if ours.endswith("attn/qkv_einsum/w"):
      flat.update(_split_qkv(ours, array, sharding_of))
    else:
      flat[ours] = array
  return shapes.unflatten(flat)


def _split_qkv(path: str, qkv: jax.Array, sharding_of) -> dict[str, jax.Array]:
  """(3, N, D, H) -> q (N, D, H) and kv (2, N, D, H), each computed straight onto its sharding."""
  q_path = path.replace("qkv_einsum", "q_einsum")
  kv_path = path.replace("qkv_einsum", "kv_einsum")
  q = jax.jit(lambda x: x[0], out_shardings=sharding_of(q_path))(qkv)
  kv = jax.jit(lambda x: x[1:], out_shardings=sharding_of(kv_path))(qkv)
  qkv.delete()
  return {q_path: q, kv_path: kv}


def to_kaggle_tree(params: shapes.Params) -> dict[str, dict[str, Any]]:
  """Our nested params -> the FLAT Kaggle tree {'transformer/<module>': {'w' | 'scale' | ...: array}}."""
  out: dict[str, dict[str, Any]] = {}
  for path, leaf in shapes.flatten(params).items():
    module, name = path.rsplit("/", 1)
    out.setdefault(_PREFIX + module, {})[name] = leaf
  return out


def save_kaggle_flax(params: shapes.Params, out_dir: str, *, dtype: Any = None,
                     overwrite: bool = False) -> str:
  """Writes `params` (LoRA already merged) as a Kaggle Flax Orbax checkpoint; returns `out_dir`.

  The layout is the FLAT one Google released, so google-deepmind/gemma's `load_params`,
  tunix and this module's reader all load it. `dtype` casts on the way (e.g. "bfloat16").
  """
  if "embedder" not in params or "final_norm" not in params:
    raise ValueError(
        "save_kaggle_flax expects the model's 'params' collection (keys embedder, layer_*,"
        f" final_norm); got top-level keys {sorted(params)[:6]}")
  out_dir = os.path.abspath(os.fspath(out_dir))
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
  tree = to_kaggle_tree(params)
  if dtype is not None:
    tree = jax.tree.map(lambda x: x.astype(jax.numpy.dtype(dtype)), tree)
  ocp.PyTreeCheckpointer().save(out_dir, tree, force=overwrite)
  return out_dir
