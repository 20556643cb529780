"""Peer GRPO step throughput: Google Tunix's GRPOLearner on "bench-small" (CPU, float32).

The same measurement as bench/bench_grpo.py, done by Tunix 0.1.7's own GRPO:
tunix.rl.grpo.grpo_learner.GRPOLearner on an RLCluster (every role on one mesh of the
CPU device, so actor, rollout and, under LoRA, the reference share one model; the
"vanilla" rollout engine, i.e. tunix.generate.sampler.Sampler with its KV cache).
Random prompts of `--prompt` tokens, `--generations` completions of `--new` tokens each
(the stop id is one the model cannot sample, so every completion runs to the budget),
random rewards, beta 0.04, epsilon 0.2, num_iterations 1, Schulman's k3 KL ("low_var_kl",
as ours), per-completion token-mean loss ("sequence-mean-token-mean", as ours), AdamW.

Timing (each call blocked on its outputs, first step excluded):
  sample  = RLCluster.generate (tokenize, prefill + decode loop, detokenize)
  update  = RLCluster.get_ref_per_token_logps (Tunix runs the reference forward as its own
            jitted pass before the train step) + RLCluster.update_actor (the train step:
            policy forward, backward, AdamW); ours does both inside one jitted update.

  TUNIX_VENV/bin/python bench/peer_tunix_grpo.py [--steps 4] [--mode full|lora|both]

One JSON line per mode on stdout, keys as bench_grpo.py's where they apply.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import resource
import statistics
import sys
import time

import jax
import numpy as np
import optax
import qwix
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tunix.models.gemma import model as gemma_lib
from tunix.rl import rl_cluster as rl_cluster_lib
from tunix.rl import utils as rl_utils
from tunix.rl.grpo import grpo_learner
from tunix.rl.rollout import base_rollout

WARMUP = 1
VOCAB = 32000
PAD = 0
NEVER = VOCAB  # the stop id: outside the vocabulary, never sampled -> every completion hits the budget
LORA_MODULES = ".*q_einsum|.*kv_einsum|.*gate_proj|.*down_proj|.*up_proj|.*attn_vec_einsum"


def log(msg):
  print(f"[peer_tunix_grpo] {msg}", file=sys.stderr, flush=True)


class IdsTokenizer:
  """Text <-> ids as space-separated integers: the prompts are random ids, rewards random.

  bos_id 0 (falsy) makes Tunix's sampler prepend nothing, so a prompt is exactly its ids.
  """

  def encode(self, text, **_):
    return [int(t) for t in text.split()]

  def decode(self, ids, **_):
    return " ".join(str(int(i)) for i in ids)

  def bos_id(self):
    return 0

  def eos_id(self):
    return NEVER

  def pad_id(self):
    return PAD


def bench_small(mesh: Mesh, seed: int) -> nnx.Module:
  """bench-small in Tunix's NNX Gemma (as the shared peer_tunix.py does), placed on `mesh`."""
  n, A = 4, gemma_lib.AttentionType
  cfg = gemma_lib.ModelConfig(
      num_layers=n, num_embed=VOCAB, embed_dim=512, hidden_dim=2048,
      num_heads=8, head_dim=64, num_kv_heads=4,
      use_post_attn_norm=True, use_post_ffw_norm=True,
      attn_logits_soft_cap=50.0, final_logit_softcap=30.0,
      attention_types=(A.LOCAL_SLIDING, A.GLOBAL) * (n // 2),
      sliding_window_size=4096,
      remat_config=gemma_lib.RematConfig.NONE)
  model = gemma_lib.Gemma(cfg, rngs=nnx.Rngs(params=seed))
  # Tunix zero-initialises the MLP kernels (real weights come from a checkpoint).
  init, key = nnx.initializers.normal(0.02), jax.random.key(seed + 1)
  for layer in model.layers:
    for name in ("gate_proj", "up_proj", "down_proj"):
      kernel = getattr(layer.mlp, name).kernel
      key, sub = jax.random.split(key)
      kernel[...] = init(sub, kernel.shape, kernel.dtype)
  return place(model, mesh)


def place(model: nnx.Module, mesh: Mesh) -> nnx.Module:
  """Every variable onto `mesh` with its partition spec (as Tunix's examples do), so
  RLCluster finds the model already on the role's mesh and does not copy it."""
  state = nnx.state(model)
  specs = nnx.get_partition_spec(state)
  placed = jax.tree.map(
      lambda x, s: jax.device_put(x, NamedSharding(mesh, s if s is not None else P())),
      state, specs)
  nnx.update(model, placed)
  return model


def random_rewards(seed: int):
  rng = np.random.default_rng(seed)

  def reward(prompts, completions, **_):
    return list(rng.normal(size=len(completions)))
  return reward


class Timer:
  """Wraps a method: blocks on its result (and on `also()`), appends the wall time."""

  def __init__(self, fn, also=None):
    self.fn, self.also, self.times = fn, also, []

  def __call__(self, *args, **kwargs):
    t = time.perf_counter()
    out = self.fn(*args, **kwargs)
    jax.block_until_ready(out if self.also is None else (out, self.also()))
    self.times.append(time.perf_counter() - t)
    return out


def bench(mode: str, steps: int, prompts: int, gens: int, prompt_len: int, new: int,
          seed: int = 0) -> dict:
  lora = mode == "lora"
  mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("fsdp", "tp"))
  base = bench_small(mesh, seed)
  if lora:
    provider = qwix.LoraProvider(module_path=LORA_MODULES, rank=16, alpha=32.0)
    actor = qwix.apply_lora_to_model(base, provider, rngs=nnx.Rngs(seed + 2),
                                     **base.get_model_input())
    actor = place(actor, mesh)
    reference = base  # RLCluster shares the backbone when actor and reference are colocated
  else:
    actor = base
    reference = nnx.clone(base)  # a frozen copy of the starting weights, in its own buffers
    nnx.update(reference, jax.tree.map(lambda x: x.copy(), nnx.state(reference)))
  shared = rl_utils.is_sharing_backbone(actor, reference)
  log(f"{mode}: actor and reference share the base weights: {shared}")

  roles = rl_cluster_lib.Role
  rollout_cfg = base_rollout.RolloutConfig(
      max_tokens_to_generate=new, max_prompt_length=prompt_len, kv_cache_size=prompt_len + new,
      temperature=1.0, top_p=1.0, top_k=None, eos_tokens=[NEVER])
  cluster_cfg = rl_cluster_lib.ClusterConfig(
      role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh, roles.ROLLOUT: mesh},
      rollout_engine="vanilla", offload_to_cpu=False,
      training_config=rl_cluster_lib.RLTrainingConfig(
          actor_optimizer=optax.adamw(1e-5, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01),
          eval_every_n_steps=10**9, max_steps=steps,
          checkpoint_root_directory=None, metrics_logging_options=None),
      rollout_config=rollout_cfg)
  cluster = rl_cluster_lib.RLCluster(actor=actor, reference=reference,
                                     tokenizer=IdsTokenizer(), cluster_config=cluster_cfg)
  log(f"{mode}: reference is the actor's backbone inside the cluster: "
      f"{rl_utils.is_sharing_backbone(cluster.actor_trainer.model, cluster.inference_worker.get_model('reference'))}"
      f"; rollout shares the actor's weights: "
      f"{rl_utils.is_sharing_weights(cluster.actor_trainer.model, cluster.rollout.model())}")
  n_params = sum(x.size for x in jax.tree.leaves(nnx.state(cluster.actor_trainer.model, nnx.Param)))
  n_train = sum(x.size for x in jax.tree.leaves(
      nnx.state(cluster.actor_trainer.model, nnx.LoRAParam if lora else nnx.Param)))
  log(f"{mode}: params {n_params:,} trainable {n_train:,}")

  algo = grpo_learner.GRPOConfig(num_generations=gens, num_iterations=1, beta=0.04,
                                 epsilon=0.2, kl_loss_mode="low_var_kl")
  learner = grpo_learner.GRPOLearner(rl_cluster=cluster, algo_config=algo,
                                     reward_fns=random_rewards(seed))
  # Time the three phases where the learner calls them (after GRPOLearner set its loss).
  state = lambda: nnx.state(cluster.actor_trainer.model)
  gen = cluster.generate = Timer(cluster.generate)
  ref = cluster.get_ref_per_token_logps = Timer(cluster.get_ref_per_token_logps)
  train = cluster.update_actor = Timer(cluster.update_actor, also=state)

  compile_s = [0.0]

  def on_duration(event, secs, **_):
    if event.startswith("/jax/core/compile/"):
      compile_s[0] += secs
  jax.monitoring.register_event_duration_secs_listener(on_duration)

  rng = np.random.default_rng(seed)
  # a batch's prompts as one NumPy array of strings (the learner tree-maps np.repeat over it)
  data = [{"prompts": np.array([" ".join(map(str, rng.integers(10, VOCAB, prompt_len)))
                                for _ in range(prompts)])} for _ in range(steps)]
  t = time.perf_counter()
  learner.train(data)
  wall = time.perf_counter() - t
  assert len(gen.times) == len(ref.times) == len(train.times) == steps, (
      len(gen.times), len(ref.times), len(train.times))
  update_times = [r + u for r, u in zip(ref.times, train.times)]
  n = prompts * gens
  s = statistics.median(gen.times[WARMUP:])
  u = statistics.median(update_times[WARMUP:])
  fmt = lambda xs: [round(x, 3) for x in xs]
  log(f"{mode} sample_s {fmt(gen.times)} ref_s {fmt(ref.times)} train_s {fmt(train.times)} "
      f"learner.train() wall {wall:.1f}s")
  return {"system": "tunix", "bench": "grpo", "mode": mode, "prompts": prompts,
          "generations": gens, "prompt_tokens": prompt_len, "new_tokens": new,
          "sampling_tokens_per_s": round(n * new / s, 1),
          "update_tokens_per_s": round(n * (prompt_len + new) / u, 1),
          "sample_s_median": round(s, 3), "update_s_median": round(u, 3),
          "ref_s_median": round(statistics.median(ref.times[WARMUP:]), 3),
          "train_s_median": round(statistics.median(train.times[WARMUP:]), 3),
          "compile_s": round(compile_s[0], 1),
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "params": int(n_params), "trainable_params": int(n_train),
          "reference_shares_base": bool(shared)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--prompts", type=int, default=2)
  ap.add_argument("--generations", type=int, default=4)
  ap.add_argument("--prompt", type=int, default=128)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--mode", choices=("full", "lora", "both"), default="both")
  args = ap.parse_args()
  if args.steps <= WARMUP:
    ap.error(f"--steps must be > {WARMUP} (the first step, with the compiles, is excluded)")
  log(f"jax {jax.__version__} devices={jax.devices()}")
  for mode in (("full", "lora") if args.mode == "both" else (args.mode,)):
    print(json.dumps(bench(mode, args.steps, args.prompts, args.generations, args.prompt,
                           args.new)), flush=True)


if __name__ == "__main__":
  main()
