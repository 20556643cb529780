"""GRPO step throughput on "bench-small" (CPU, float32): sampling tokens/s and update tokens/s.

The trainer's own GRPO pieces (train/grpo_step.py, jitted with the trainer's shardings):
random prompts of `--prompt` tokens, `--generations` completions of `--new` tokens each
(the stop token is masked out so every completion runs to the budget and the figures are
comparable), the update on the whole batch. One JSON line per mode on stdout.

  python bench/bench_grpo.py [--steps 5] [--mode full|lora|both]
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

from jax_sft import config as config_lib
from jax_sft.train import builder, grpo, mesh as mesh_lib, weights
from jax_sft.train.grpo_loss import group_advantages

WARMUP = 1


def bench(mode: str, steps: int, prompts: int, gens: int, prompt_len: int, new: int) -> dict:
  cfg = config_lib.from_dict({
      "model": {"preset": "bench_small", "loss_chunk": 128},
      "lora": {"enabled": mode == "lora", "rank": 16, "alpha": 32.0},
      "train": {"objective": "grpo", "learning_rate": 1e-5, "schedule": "constant",
                "warmup_ratio": 0.0, "grad_clip": 0.0},
      "grpo": {"prompts_per_step": prompts, "num_generations": gens, "max_prompt_tokens": prompt_len,
               "max_new_tokens": new, "temperature": 1.0},
      "mesh": {"data": 1, "fsdp": -1}})
  trainer = builder.build(cfg, mesh_lib.make_mesh(cfg.mesh), total_steps=steps)
  t = time.perf_counter()
  sample, update = trainer.compile()
  compile_s = time.perf_counter() - t
  base = weights.random_params(cfg, 0, trainer.base_sh)
  if trainer.lora:
    state, frozen, reference = trainer.init_state(trainer.new_adapters()), base, {}
  else:
    state, frozen, reference = trainer.init_state(base), {}, jax.tree.map(lambda x: x.copy(), base)
  rng = np.random.default_rng(0)
  n = prompts * gens
  sample_s, update_s = [], []
  for _ in range(steps):
    rows = [rng.integers(10, cfg.model.vocab_size, prompt_len).astype(np.int32)] * n
    tokens, pos, seg = grpo.left_padded(rows, prompt_len, 0)
    t = time.perf_counter()
    new_tokens, counts = sample(state.params, frozen, tokens, pos, seg,
                                jax.random.key_data(jax.random.key(len(sample_s))))
    new_tokens, counts = jax.block_until_ready((new_tokens, counts))
    sample_s.append(time.perf_counter() - t)
    counts = np.full(n, new, np.int32)  # every completion at the budget: comparable figures
    batch = grpo.update_batch(rows, np.asarray(new_tokens), counts, prompt_len, 0)
    batch["advantages"] = group_advantages(rng.normal(size=n), gens)
    batch["old_logp"] = np.zeros_like(batch["completion_mask"])
    t = time.perf_counter()
    state, m = update(state, frozen, reference, batch)
    jax.block_until_ready((state, m))
    update_s.append(time.perf_counter() - t)
  s, u = statistics.median(sample_s[WARMUP:]), statistics.median(update_s[WARMUP:])
  print(f"[bench_grpo] {mode} sample_s {sample_s} update_s {update_s}", file=sys.stderr)
  return {"system": "jax_sft", "bench": "grpo", "mode": mode, "prompts": prompts,
          "generations": gens, "prompt_tokens": prompt_len, "new_tokens": new,
          "sampling_tokens_per_s": round(n * new / s, 1),
          "update_tokens_per_s": round(n * (prompt_len + new) / u, 1),
          "sample_s_median": round(s, 3), "update_s_median": round(u, 3),
          "compile_s": round(compile_s, 1),
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--prompts", type=int, default=2)
  ap.add_argument("--generations", type=int, default=4)
  ap.add_argument("--prompt", type=int, default=128)
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--mode", choices=("full", "lora", "both"), default="both")
  args = ap.parse_args()
  for mode in (("full", "lora") if args.mode == "both" else (args.mode,)):
    print(json.dumps(bench(mode, args.steps, args.prompts, args.generations, args.prompt,
                           args.new)), flush=True)


if __name__ == "__main__":
  main()
