"""GRPO polish after SFT: the prompts, the sampling, and one step of the policy update.

A GRPO step, run by the same loop as SFT (train/loop.py) through `GrpoStep`:
  1. the next `prompts_per_step` training questions (a Grain iterator: saved in checkpoints);
  2. `num_generations` completions of each, sampled with the KV-cache sampler under the
     trainer's shardings, from an RNG stream of the train state (so a resume is exact);
  3. rewards from the layer above (`reward_fn`: eval's checker and metrics), normalized per
     question (grpo_loss.group_advantages);
  4. `num_iterations` optimizer steps on the clipped objective with a KL penalty to the
     reference policy: under LoRA the base with the adapters off (no second copy), under
     full fine-tuning a frozen copy of the starting weights.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.data import shards
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.model import sampler
from jax_sft.model.gemma import Transformer
from jax_sft.train.grpo_loss import grpo_loss, token_logprobs
from jax_sft.train.precision import apply_update
from jax_sft.train.state import TrainState

PyTree = Any
# (completions' text, hit the budget, reference answers) -> (combined [n], {name: [n]})
RewardFn = Callable[[Sequence[str], Sequence[bool], Sequence[str]],
                    tuple[np.ndarray, dict[str, np.ndarray]]]


# --- prompts ---------------------------------------------------------------------------


class _Prompt(grain.transforms.Map):
  """A prepared example -> its prompt (BOS, user turn, model header) and its record index."""

  def __init__(self, num_records: int):
    self.num_records = num_records

  def map(self, element):
    index, blob = element
    tokens, prompt_len = shards.deserialize_tokens(blob)
    # Downstream repeats and shuffles can hand the map an index past the end: it wraps.
    return {"prompt": np.asarray(tokens[:prompt_len], np.int32),
            "index": np.int32(index % self.num_records)}


def prompt_iterator(cfg: config_lib.Config):
  """Batches of `prompts_per_step` training prompts, shuffled by the run's seed, repeated
  forever; prompts over grpo.max_prompt_tokens are left out. A Grain iterator: its position
  is saved with each checkpoint. Never the held-out split."""
  paths = shards.shard_paths(cfg.data.output_dir, "train")
  if not paths:
    raise FileNotFoundError(f"no train shards in {cfg.data.output_dir}: run `jax-sft prepare`")
  limit = cfg.grpo.max_prompt_tokens
  source = grain.sources.ArrayRecordDataSource(paths)
  ds = grain.MapDataset.source(source)
  ds = ds.map_with_index(lambda i, blob: (i, blob)).map(_Prompt(len(source)))
  ds = ds.filter(lambda ex: len(ex["prompt"]) <= limit)
  ds = ds.shuffle(seed=cfg.seed).repeat(None)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))
  return iter(it.batch(cfg.grpo.prompts_per_step, drop_remainder=True,
                       batch_fn=lambda rows: rows))


def references(cfg: config_lib.Config) -> list[str]:
  """The training split's reference answers, by record index (train.records.jsonl's order)."""
  path = storage.join(cfg.data.output_dir, "train.records.jsonl")
  return [json.loads(line)["answer"] for line in storage.read_text(path).splitlines() if line]


# --- the pieces that run on the devices ------------------------------------------------


def _policy_logprobs(model: Transformer, model_cfg, params, lora, batch) -> jax.Array:
  """log p(target) of every position [B, T] under params (+ adapters when given)."""
  variables = {"params": params} if lora is None else {"params": params, "lora": lora}
  hidden = model.apply(variables, batch["inputs"], batch["positions"], batch["segment_ids"],
                       return_hidden=True)
  return token_logprobs(hidden, params["embedder"]["input_embedding"], batch["targets"],
                        model_cfg.final_softcap, model_cfg.loss_chunk or 128)


def make_update(cfg: config_lib.Config, tx, schedule, *, lora: bool):
  """The un-jitted GRPO update: (state, frozen, reference, batch) -> (state, metrics).

  Under LoRA `frozen` is the base and `reference` is unused (the base with the adapters off
  is the reference); in full fine-tuning `frozen` is {} and `reference` the frozen copy.
  """
  policy = Transformer(cfg.model, cfg.lora if lora else None)
  plain = Transformer(cfg.model)
  g = cfg.grpo

  def loss_fn(trainable, frozen, reference, batch):
    params, adapters = (frozen, trainable) if lora else (trainable, None)
    logp = _policy_logprobs(policy, cfg.model, params, adapters, batch)
    ref_params = frozen if lora else reference
    ref_logp = jax.lax.stop_gradient(_policy_logprobs(plain, cfg.model, ref_params, None, batch))
    old = batch["old_logp"] if g.num_iterations > 1 else jax.lax.stop_gradient(logp)
    return grpo_loss(logp, old, ref_logp, batch["advantages"], batch["completion_mask"],
                     epsilon=g.epsilon, beta=g.beta)

  def update(state: TrainState, frozen, reference, batch):
    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, frozen,
                                                                  reference, batch)
    grads = jax.tree.map(lambda x: x.astype(jnp.float32), grads)
    params, opt_state = apply_update(tx, grads, state.params, state.opt_state,
                                     jax.random.fold_in(state.rng, 1),
                                     cfg.train.stochastic_rounding)
    rng, _ = jax.random.split(state.rng)
    metrics = dict(m, loss=loss, grad_norm=jnp.sqrt(sum(jnp.sum(x * x) for x in
                                                        jax.tree.leaves(grads))),
                   lr=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), metrics

  return update


def make_old_logprobs(cfg: config_lib.Config, *, lora: bool):
  """The sampling policy's log p(target) [B, T] (needed when num_iterations > 1)."""
  policy = Transformer(cfg.model, cfg.lora if lora else None)

  def old(trainable, frozen, batch):
    params, adapters = (frozen, trainable) if lora else (trainable, None)
    return _policy_logprobs(policy, cfg.model, params, adapters, batch)
  return old


def make_sampler(cfg: config_lib.Config, tok: Tokenizer, *, lora: bool):
  """The un-jitted sampler: (trainable, frozen, prompts, positions, segments, rng) ->
  (new tokens [n, max_new_tokens], counts [n] with the stop marker)."""
  model = Transformer(cfg.model, cfg.lora if lora else None)
  g = cfg.grpo
  decode = functools.partial(
      sampler.decode, model=model, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
      top_k=g.top_k, top_p=g.top_p, stop_ids=(tok.end_of_turn_id, tok.eos_id), pad_id=tok.pad_id)

  def sample(trainable, frozen, tokens, positions, segments, rng):
    params, adapters = (frozen, trainable) if lora else (trainable, None)
    variables = {"params": params} if adapters is None else {"params": params, "lora": adapters}
    return decode(variables, tokens, positions, segments, rng)
  return sample


# --- host side: from samples to the update's batch ---------------------------------------


def update_batch(prompts: Sequence[np.ndarray], new_tokens: np.ndarray, counts: np.ndarray,
                 prompt_len: int, pad_id: int) -> dict[str, np.ndarray]:
  """The completions as next-token rows [n, P + N - 1]: the prompt left-padded to
  `prompt_len`, then the completion (its stop marker included); `completion_mask` marks the
  targets that are completion tokens, so the loss never sees the prompt or the padding.

      prompt [5, 6], completion [7, 1] (1 = stop), P = 3, N = 3:
      tokens        [0, 5, 6, 7, 1, 0]
      inputs        [0, 5, 6, 7, 1]     targets [5, 6, 7, 1, 0]
      segment_ids   [0, 1, 1, 1, 1]     completion_mask [0, 0, 1, 1, 0]
  """
  n, N = new_tokens.shape
  L = prompt_len + N
  tokens = np.full((n, L), pad_id, np.int32)
  seg = np.zeros((n, L), np.int32)
  pos = np.zeros((n, L), np.int32)
  comp = np.zeros((n, L), np.float32)
  for i, (p, new, k) in enumerate(zip(prompts, new_tokens, counts)):
    start = prompt_len - len(p)
    tokens[i, start:prompt_len] = p
    tokens[i, prompt_len:prompt_len + k] = new[:k]
    seg[i, start:prompt_len + k] = 1
    pos[i, start:prompt_len + k] = np.arange(len(p) + k)
    comp[i, prompt_len:prompt_len + k] = 1.0
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "positions": pos[:, :-1],
          "segment_ids": seg[:, :-1], "completion_mask": comp[:, 1:]}


def left_padded(prompts: Sequence[np.ndarray], prompt_len: int, pad_id: int):
  """(tokens, positions, segment_ids) [n, prompt_len] for the sampler."""
  n = len(prompts)
  tokens = np.full((n, prompt_len), pad_id, np.int32)
  pos = np.zeros((n, prompt_len), np.int32)
  seg = np.zeros((n, prompt_len), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, prompt_len - len(p):] = p
    pos[i, prompt_len - len(p):] = np.arange(len(p))
    seg[i, prompt_len - len(p):] = 1
  return tokens, pos, seg
