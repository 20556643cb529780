"""Model throughput on bench-small (CPU, float32); prints one JSON line.

  python bench/bench_model.py [--batch 8 --seq 512 --new-tokens 64 --repeats 2]
forward: logits for a [batch, seq] block; train_grad: loss + gradients wrt all params (the
fused chunked loss; no optimizer); sampling: greedy KV-cache decode of new tokens per row.
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jax_sft import config as model_config  # noqa: E402
from jax_sft.model import sampler  # noqa: E402
from jax_sft.model.gemma import Transformer  # noqa: E402
from jax_sft.model.loss import chunked_cross_entropy  # noqa: E402


def _best(fn, repeats):
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--preset", default="bench_small")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=512)
  p.add_argument("--prompt", type=int, default=64)
  p.add_argument("--new-tokens", type=int, default=64)
  p.add_argument("--loss-chunk", type=int, default=64)
  p.add_argument("--repeats", type=int, default=2)
  args = p.parse_args()
  cfg = model_config.preset(args.preset)
  model = Transformer(cfg)
  B, T = args.batch, args.seq
  tokens = jax.random.randint(jax.random.key(1), (B, T), 1, cfg.vocab_size)
  params = jax.jit(model.init)(jax.random.key(0), tokens[:, :8])["params"]

  forward = jax.jit(lambda p, t: model.apply({"params": p}, t))
  fwd_s = _best(lambda: forward(params, tokens), args.repeats)

  def loss(p, t):
    h = model.apply({"params": p}, t, return_hidden=True)
    s, n = chunked_cross_entropy(h, p["embedder"]["input_embedding"], jnp.roll(t, -1, 1),
                                 jnp.ones(t.shape), chunk=args.loss_chunk,
                                 final_softcap=cfg.final_softcap)
    return s / n
  grad = jax.jit(jax.value_and_grad(loss))
  grad_s = _best(lambda: grad(params, tokens), args.repeats)

  prompts = np.asarray(tokens[:, :args.prompt])
  gen = lambda: sampler.generate(params, cfg, [list(r) for r in prompts],
                                 max_new_tokens=args.new_tokens)
  gen()  # compile
  t0 = time.perf_counter()
  out = gen()
  gen_s = time.perf_counter() - t0
  print(json.dumps({
      "bench": "model", "preset": args.preset, "device": jax.devices()[0].device_kind,
      "batch": B, "seq": T, "forward_tokens_per_s": round(B * T / fwd_s, 1),
      "train_grad_tokens_per_s": round(B * T / grad_s, 1), "loss_chunk": args.loss_chunk,
      "sampling_tokens_per_s": round(sum(len(r) for r in out) / gen_s, 1),
      "sampling_batch": B, "prompt_len": args.prompt, "new_tokens": args.new_tokens,
      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))


if __name__ == "__main__":
  main()
