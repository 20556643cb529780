"""What every format shares: shape checks, reading and writing through the weight table, placement.

Paths are '/'-joined keys of our param tree (the Kaggle Flax layout without the leading
`transformer/`), e.g. 'layer_0/attn/q_einsum/w'. Shapes, external names and layouts come
from the weight table (jax_sft.model.params), so a checkpoint can be checked before
anything is read or the model is built, and a format reader only has to list, size and
read its tensors (`TensorReader`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.config import ModelConfig
from jax_sft.model import params as params_lib

Params = dict[str, Any]


class CheckpointMismatch(ValueError):
  """A checkpoint whose names or shapes do not match the chosen config."""


class TensorReader(Protocol):
  """A checkpoint's tensors by their own names."""

  def names(self) -> set[str]: ...
  def shape(self, name: str) -> tuple[int, ...]: ...
  def get(self, name: str) -> np.ndarray: ...


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """{'/'-joined param path: shape} for `cfg`, in checkpoint order (embedder, layers, final norm)."""
  return params_lib.shapes(cfg)


def _preset(cfg: ModelConfig) -> str:
  return f" (preset {cfg.preset})" if cfg.preset else ""


def check_shapes(found: Mapping[str, tuple[int, ...]], cfg: ModelConfig, source: str) -> None:
  """Raises CheckpointMismatch naming the first wrong shape, then missing/unexpected names.

  `found` maps our param paths to the shapes a checkpoint holds; `source` names the file.
  """
  want = expected_shapes(cfg)
  for path, shape in want.items():
    if path in found and tuple(found[path]) != tuple(shape):
      raise CheckpointMismatch(
          f"{source}: parameter {path!r} has shape {tuple(found[path])} in the checkpoint"
          f" but the config{_preset(cfg)} expects {tuple(shape)}")
  _missing_or_unexpected([p for p in want if p not in found],
                         [p for p in found if p not in want], cfg, source)


def _missing_or_unexpected(missing, unexpected, cfg, source) -> None:
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)} parameter(s), first {missing[:5]}")
    if unexpected:
      parts.append(f"unexpected {len(unexpected)} parameter(s), first {unexpected[:5]}")
    raise CheckpointMismatch(f"{source}: " + "; ".join(parts) + f" for the config{_preset(cfg)}")


def _vocab_ok(w: params_lib.Weight, got: tuple[int, ...], want: tuple[int, ...],
              cfg: ModelConfig) -> bool:
  """An embedding may hold our row count or the format's (256000 vs 256128; 262208 vs 262144)."""
  if w.dims[0] != "V" or got[1:] != want[1:]:
    return False
  return got[0] in (cfg.vocab_size, want[0]) or (got[0], cfg.vocab_size) == (262208, 262144)


def check_external(reader: TensorReader, cfg: ModelConfig, fmt: str, source: str,
                   ignored: tuple[str, ...] = ()) -> None:
  """Raises CheckpointMismatch naming our parameter, its tensor in `fmt` and both shapes."""
  present = reader.names()
  missing, used = [], set()
  for w in params_lib.weights(cfg):
    names = w.column(fmt).names
    used.update(names)
    for name, want in zip(names, params_lib.external_shapes(w, fmt, cfg)):
      if name not in present:
        missing.append(name)
        continue
      got = tuple(int(x) for x in reader.shape(name))
      if got != want and not _vocab_ok(w, got, want, cfg):
        raise CheckpointMismatch(
            f"{source}: {name} (our {w.path}) has shape {got} but the config{_preset(cfg)}"
            f" expects {want}")
  unexpected = sorted(n for n in present - used if n not in ignored)
  _missing_or_unexpected(missing, unexpected, cfg, source)


def read_external(reader: TensorReader, cfg: ModelConfig, fmt: str, source: str,
                  shardings: Any = None, dtype: Any = None,
                  ignored: tuple[str, ...] = (), checked: bool = False) -> Params:
  """Our param tree from a checkpoint in `fmt`: checked first (unless `checked`), then one
  weight at a time through host memory, converted, cast to `dtype` and placed slice by slice."""
  if not checked:
    check_external(reader, cfg, fmt, source, ignored)
  sharding_of = sharding_lookup(shardings)
  dtype = resolve_dtype(cfg, dtype)
  flat = {}
  for w in params_lib.weights(cfg):
    host = params_lib.from_external(w, fmt, [reader.get(n) for n in w.column(fmt).names], cfg)
    flat[w.path] = place(host, sharding_of(w.path), dtype)
    del host
  return unflatten(flat)


def external_tensors(params: Params, cfg: ModelConfig, fmt: str
                     ) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
  """(name, thunk) of every tensor of `params` in `fmt`; a thunk builds one on the host."""
  flat = flatten(params)
  check_shapes({p: tuple(x.shape) for p, x in flat.items()}, cfg, source="params")
  for w in params_lib.weights(cfg):
    names = w.column(fmt).names
    for j, name in enumerate(names):
      yield name, (lambda w=w, j=j: params_lib.to_external(
          w, fmt, jax.device_get(flat[w.path]), cfg)[j])


def external_nbytes(cfg: ModelConfig, fmt: str, itemsize: int) -> dict[str, int]:
  """{name: bytes} of every tensor in `fmt` at `itemsize` bytes per element (nothing read)."""
  out = {}
  for w in params_lib.weights(cfg):
    for name, shape in zip(w.column(fmt).names, params_lib.external_shapes(w, fmt, cfg)):
      out[name] = math.prod(shape) * itemsize
  return out


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested param dict -> {'a/b/c': leaf}."""
  out = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      for sub, leaf in flatten(value).items():
        out[f"{key}/{sub}"] = leaf
    else:
      out[key] = value
  return out


def unflatten(flat: Mapping[str, Any]) -> Params:
  """{'a/b/c': leaf} -> nested dict."""
  out: Params = {}
  for path, leaf in flat.items():
    *parents, name = path.split("/")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[name] = leaf
  return out


def sharding_lookup(shardings: Any) -> Callable[[str], jax.sharding.Sharding]:
  """Turns the `shardings` argument of the loaders into path -> Sharding.

  Accepts None (everything on the first device), one Sharding for every parameter,
  or a pytree of Shardings shaped like the params (nested dict or flat '/'-joined dict).
  """
  if shardings is None:
    single = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return lambda path: single
  if isinstance(shardings, jax.sharding.Sharding):
    return lambda path: shardings
  flat = flatten(shardings)

  def lookup(path: str) -> jax.sharding.Sharding:
    if path not in flat:
      raise KeyError(f"shardings has no entry for parameter {path!r}")
    return flat[path]

  return lookup


def resolve_dtype(cfg: ModelConfig, dtype: Any) -> np.dtype:
  """The dtype parameters are cast to: `dtype` if given, else `cfg.param_dtype`."""
  return np.dtype(jnp.dtype(str(dtype) if dtype is not None else str(cfg.param_dtype)))


def place(host_array: np.ndarray, sharding: jax.sharding.Sharding, dtype: np.dtype) -> jax.Array:
  """Puts a host array onto `sharding`, each device receiving only its own slice.

  `jax.make_array_from_callback` asks for one index per addressable shard, so no device
  ever holds the whole array unless its sharding says so.
  """
  host_array = np.asarray(host_array)
  return jax.make_array_from_callback(
      host_array.shape, sharding,
      lambda index: np.ascontiguousarray(host_array[index].astype(dtype, copy=False)))


def random_params(cfg: ModelConfig, seed: int = 0, dtype: Any = None) -> Params:
  """Random host (numpy) params of `cfg`'s shapes, for tests and benchmarks; norms non-zero too."""
  rng = np.random.default_rng(seed)
  dtype = resolve_dtype(cfg, dtype)
  flat = {path: (rng.standard_normal(shape, dtype=np.float32) * 0.5).astype(dtype)
          for path, shape in expected_shapes(cfg).items()}
  return unflatten(flat)
