"""Autoregressive sampling with a KV cache: one jitted prefill plus a lax.while_loop decode.

Prompts of different lengths are left-padded to a common length P (padding has segment 0,
so nothing attends to it; positions restart at 0 at each prompt's first real token); every
row then writes its new token at the same cache index, and local layers keep their
sliding window through the cache's stored positions.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft.config import LoraConfig, ModelConfig
from jax_sft.model.gemma import Transformer, init_cache


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0):
  """(tokens_BP, positions_BP, segment_ids_BP) for prompts left-padded to the longest one."""
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("every prompt needs at least one token")
  P = max(len(p) for p in prompts)
  tokens = np.full((len(prompts), P), pad_id, np.int32)
  positions = np.zeros((len(prompts), P), np.int32)
  segments = np.zeros((len(prompts), P), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, P - len(p):] = p
    positions[i, P - len(p):] = np.arange(len(p))
    segments[i, P - len(p):] = 1
  return tokens, positions, segments


def strip_padding(tokens_BL: np.ndarray, pad_id: int) -> list[list[int]]:
  """Rows of a left- or right-padded array without their pad tokens."""
  return [[int(t) for t in row if t != pad_id] for row in np.asarray(tokens_BL)]


def sample_logits(rng, logits_BV, temperature: float, top_k: int, top_p: float):
  """Next tokens [B]: greedy when temperature == 0, else top-k / top-p filtered sampling."""
  if temperature <= 0.0:
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
  logits_BV = logits_BV.astype(jnp.float32) / temperature
  if top_k > 0:
    kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
    logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  if top_p < 1.0:
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    cum_BV = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
    # keep the smallest prefix whose mass reaches top_p (always the most likely token)
    cutoff_idx_B = jnp.sum(cum_BV < top_p, axis=-1)
    cutoff_B1 = jnp.take_along_axis(sorted_BV, cutoff_idx_B[:, None], axis=-1)
    logits_BV = jnp.where(logits_BV < cutoff_B1, -jnp.inf, logits_BV)
  return jax.random.categorical(rng, logits_BV, axis=-1).astype(jnp.int32)


_STATIC = ("max_new_tokens", "temperature", "top_k", "top_p", "stop_ids", "pad_id")


_COMPILED: dict[str, object] = {}


def _compiled(config_key: str, model: Transformer):
  """One jitted generate per model config (ModelConfig holds lists, so it is not hashable)."""
  if config_key not in _COMPILED:
    _COMPILED[config_key] = jax.jit(functools.partial(decode, model=model),
                                    static_argnames=_STATIC)
  return _COMPILED[config_key]


def decode(variables, tokens_BP, positions_BP, segments_BP, rng, *, model, max_new_tokens,
           temperature, top_k, top_p, stop_ids, pad_id):
  """(new tokens [B, max_new_tokens] padded with pad_id, their counts [B] with the stop token).

  Un-jitted: `generate` jits it per config; GRPO jits it with the trainer's shardings.
  """
  B, P = tokens_BP.shape
  cache = init_cache(model.config, B, P + max_new_tokens)
  logits_B1V, cache = model.apply(variables, tokens_BP, positions_BP, segments_BP, cache=cache,
                                  last_only=True)
  next_pos_B = positions_BP[:, -1] + 1
  stops = jnp.asarray(stop_ids or (-1,), jnp.int32)

  def is_stop(tok_B):
    return jnp.any(tok_B[:, None] == stops[None, :], axis=-1)

  rng, sub = jax.random.split(rng)
  tok_B = sample_logits(sub, logits_B1V[:, -1], temperature, top_k, top_p)
  out_BN = jnp.full((B, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(tok_B)
  state = (cache, tok_B, next_pos_B, is_stop(tok_B), out_BN, jnp.ones((B,), jnp.int32),
           jnp.int32(1), rng)

  def cond(state):
    *_, done_B, _, _, step, _ = state
    return (step < max_new_tokens) & ~jnp.all(done_B)

  def body(state):
    cache, tok_B, pos_B, done_B, out_BN, len_B, step, rng = state
    logits_B1V, cache = model.apply(variables, tok_B[:, None], pos_B[:, None],
                                    jnp.ones((B, 1), jnp.int32), cache=cache)
    rng, sub = jax.random.split(rng)
    new_B = sample_logits(sub, logits_B1V[:, 0], temperature, top_k, top_p)
    new_B = jnp.where(done_B, pad_id, new_B)
    out_BN = out_BN.at[:, step].set(new_B)
    len_B = len_B + (~done_B).astype(jnp.int32)
    return cache, new_B, pos_B + 1, done_B | is_stop(new_B), out_BN, len_B, step + 1, rng

  _, _, _, _, out_BN, len_B, _, _ = jax.lax.while_loop(cond, body, state)
  return out_BN, len_B


def generate(params, config: ModelConfig, prompts, *, lora=None,
             lora_config: Optional[LoraConfig] = None, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             stop_ids: Sequence[int] = (), pad_id: int = 0) -> list[list[int]]:
  """New token ids per prompt, stopping at any of stop_ids (dropped) or max_new_tokens.

  prompts: a list of token-id lists, or a [B, L] array left- or right-padded with pad_id.
  """
  if isinstance(prompts, np.ndarray) or (hasattr(prompts, "ndim") and prompts.ndim == 2):
    prompts = strip_padding(np.asarray(prompts), pad_id)
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  tokens, positions, segments = left_pad(prompts, pad_id)
  model = Transformer(config, lora_config if lora is not None else None)
  variables = {"params": params} if lora is None else {"params": params, "lora": lora}
  fn = _compiled(repr((config, lora_config if lora is not None else None)), model)
  out, lengths = fn(variables, tokens, positions, segments, jax.random.key(seed),
                    max_new_tokens=max_new_tokens, temperature=float(temperature),
                    top_k=int(top_k), top_p=float(top_p),
                    stop_ids=tuple(int(s) for s in stop_ids), pad_id=int(pad_id))
  out, lengths = np.asarray(out), np.asarray(lengths)
  stops = set(int(s) for s in stop_ids)
  result = []
  for row, n in zip(out, lengths):
    row = [int(t) for t in row[:n]]
    result.append(row[:-1] if row and row[-1] in stops else row)
  return result
