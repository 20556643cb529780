"""Micro-benchmark of the loss + its gradient on bench-small shapes; one JSON line.

  python bench/bench_loss.py [--prompt-frac 0.5] [--repeats 3]
Variants: full float32 logits (autodiff), rematerialized chunks (jax.checkpoint + autodiff),
and jax_sft's fused chunked loss, at several chunk sizes.
"""

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jax_sft.model.loss import chunked_cross_entropy, full_cross_entropy  # noqa: E402


def checkpointed_chunks(h_BTD, emb_VD, tgt_BT, mask_BT, *, chunk, final_softcap):
  """The straightforward design: jax.checkpoint around each chunk's full autodiff loss."""
  B, T, D = h_BTD.shape
  n = T // chunk

  @jax.checkpoint
  def one(h_BCD, t_BC, m_BC):
    return full_cross_entropy(h_BCD, emb_VD, t_BC, m_BC, final_softcap=final_softcap)[0]

  def body(acc, xs):
    return acc + one(*xs), None
  xs = (h_BTD.reshape(B, n, chunk, D).swapaxes(0, 1), tgt_BT.reshape(B, n, chunk).swapaxes(0, 1),
        mask_BT.reshape(B, n, chunk).swapaxes(0, 1))
  return jax.lax.scan(body, jnp.zeros(()), xs)[0], jnp.sum(mask_BT)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=512)
  parser.add_argument("--embed", type=int, default=512)
  parser.add_argument("--vocab", type=int, default=32000)
  parser.add_argument("--softcap", type=float, default=30.0)
  parser.add_argument("--prompt-frac", type=float, default=0.0,
                      help="leading fraction of each row with loss_mask 0 (a prompt)")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  k = jax.random.split(jax.random.key(0), 3)
  B, T, D, V = args.batch, args.seq, args.embed, args.vocab
  h = jax.random.normal(k[0], (B, T, D)) * 0.5
  emb = jax.random.normal(k[1], (V, D)) * 0.05
  tgt = jax.random.randint(k[2], (B, T), 0, V)
  mask = (jnp.arange(T) >= int(args.prompt_frac * T)).astype(jnp.float32)[None].repeat(B, 0)
  variants = {"full": (full_cross_entropy, {})}
  for c in (128, 256):
    variants[f"checkpoint_c{c}"] = (checkpointed_chunks, {"chunk": c})
  for c in (64, 128, 256):
    variants[f"fused_c{c}"] = (chunked_cross_entropy, {"chunk": c})
  result = {"bench": "loss", "shape_BTDV": [B, T, D, V], "prompt_frac": args.prompt_frac}
  for name, (fn, kw) in variants.items():
    f = jax.jit(jax.value_and_grad(
        lambda h, e, fn=fn, kw=kw: fn(h, e, tgt, mask, final_softcap=args.softcap, **kw)[0],
        argnums=(0, 1)))
    jax.block_until_ready(f(h, emb))
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(f(h, emb))
      times.append(time.perf_counter() - t0)
    result[f"{name}_s"] = round(min(times), 4)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
