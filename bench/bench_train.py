"""Training throughput of jax_sft's own train step on "bench-small" (CPU, float32).

One JSON line per mode (full, lora) on stdout: tokens/s (all and real), step time,
model FLOPs per token, achieved FLOP/s as a fraction of this machine's float32 matmul
peak (2048x2048, measured in the same run), compile time and peak RSS. Synthetic batches
like the peers' (../shared/bench): random ids, the first 25% of each row is prompt (no loss).

  python bench/bench_train.py --steps 8 [--mode full|lora|both] [--loss-chunk 128]
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")

import argparse
import json
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_sft import config as config_lib
from jax_sft.train import builder, checkpoint as ckpt_lib, data_feed, mesh as mesh_lib, session

WARMUP_STEPS = 3  # excluded, as in the peers' scripts


def matmul_peak_flops(n: int = 2048, reps: int = 10) -> float:
  """Best float32 FLOP/s of an n x n matmul on this machine, now."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  f(a, a).block_until_ready()
  best = float("inf")
  for _ in range(reps):
    t = time.perf_counter()
    f(a, a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n**3 / best


def model_flops_per_token(m, seq: int, lora: bool) -> float:
  """Useful training FLOPs per token: forward 2 per weight use; backward 4 in full FT
  (activation and weight grads), 2 under LoRA (activation grads only; adapters ~0)."""
  D, N, K, H, F, V = m.embed_dim, m.num_heads, m.num_kv_heads, m.head_dim, m.mlp_dim, m.vocab_size
  per_layer = D * N * H + 2 * D * K * H + N * H * D + 3 * D * F
  matmul = m.num_layers * per_layer + D * V  # + tied logits
  attn = m.num_layers * 2 * N * H * seq  # QK^T and AV, causal half of 2*T each
  fwd = 2 * matmul + 2 * attn
  return fwd * (2 if lora else 3)


def bench(mode: str, steps: int, batch: int, seq: int, loss_chunk: int, peak: float) -> dict:
  cfg = config_lib.from_dict({
      "model": {"preset": "bench_small", "loss_chunk": loss_chunk},
      "lora": {"enabled": mode == "lora", "rank": 16, "alpha": 32.0},
      "train": {"batch_size": batch, "learning_rate": 2e-5, "weight_decay": 0.01,
                "grad_clip": 0.0, "warmup_ratio": 0.0, "schedule": "constant"},
      "mesh": {"data": 1, "fsdp": -1}, "data": {"max_seq_len": seq}})
  trainer = builder.build(cfg, mesh_lib.make_mesh(cfg.mesh), total_steps=steps)
  mesh = trainer.mesh
  ckpt = ckpt_lib.Checkpointer(f"/tmp/bench_train_{os.getpid()}_{mode}", cfg.checkpoint)
  start = session.build(trainer, ckpt, resume=False, init_from=None, init_optimizer=False)
  t = time.perf_counter()
  fn = trainer.compile()  # the very step `jax-sft train` runs
  compile_s = time.perf_counter() - t

  rng = np.random.default_rng(0)
  state, times, losses = start.state, [], []
  for _ in range(steps):
    tokens = rng.integers(1, cfg.model.vocab_size, (batch, seq + 1)).astype(np.int32)
    mask = np.ones((batch, seq), np.float32)
    mask[:, : seq // 4] = 0.0
    host = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": mask,
            "segment_ids": np.ones((batch, seq), np.int32),
            "positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1))}
    t = time.perf_counter()
    state, m = fn(state, start.frozen, data_feed.to_device(host, mesh, batch))
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
    losses.append(float(m["loss"]))
  meas = times[WARMUP_STEPS:]
  tok_s = batch * seq * len(meas) / sum(meas)
  fpt = model_flops_per_token(cfg.model, seq, cfg.lora.enabled)
  print(f"[bench_train] {mode} step_s " + " ".join(f"{x:.2f}" for x in times)
        + " loss " + " ".join(f"{x:.3f}" for x in losses), file=sys.stderr)
  return {
      "system": "jax_sft", "mode": mode, "steps": steps, "batch": batch, "seq": seq,
      "loss_chunk": loss_chunk,
      "tokens_per_s": round(tok_s, 1),
      "real_tokens_per_s": round(tok_s, 1),  # synthetic rows have no padding
      "loss_tokens_per_s": round(tok_s * 0.75, 1),
      "step_s_median": round(statistics.median(meas), 4),
      "compile_s": round(compile_s, 2),
      "model_flops_per_token": int(fpt),
      "achieved_tflop_s": round(tok_s * fpt / 1e12, 4),
      "matmul_peak_tflop_s": round(peak / 1e12, 4),
      "fraction_of_peak": round(tok_s * fpt / peak, 3),
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "trainable_params": int(sum(x.size for x in jax.tree.leaves(state.params))),
  }


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=8)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=512)
  ap.add_argument("--mode", choices=("full", "lora", "both"), default="both")
  ap.add_argument("--loss-chunk", type=int, default=128)
  args = ap.parse_args()
  if args.steps <= WARMUP_STEPS:
    ap.error(f"--steps must be > {WARMUP_STEPS}")
  peak = matmul_peak_flops()
  for mode in (("full", "lora") if args.mode == "both" else (args.mode,)):
    print(json.dumps(bench(mode, args.steps, args.batch, args.seq, args.loss_chunk, peak)),
          flush=True)


if __name__ == "__main__":
  main()
