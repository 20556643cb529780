"""Data benchmark: prepare and loader throughput, packing efficiency. Prints one JSON line.

Synthetic rows in the real layouts with realistic lengths (median model-side characters:
Raiden ~9.8K, glaive ~7K, OpenO1 ~4K, CoT-Collection rationale ~240), tokenized with the
bundled sample tokenizer. Usage: python bench/bench_data.py [--n 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import tempfile
import time

import numpy as np

from jax_sft.data import loader, prepare
from jax_sft.data.config import DataConfig, SourceConfig
from jax_sft.samples import make_sample_datasets as samples

MIX = {"raiden": (0.55, 9800), "openo1": (0.20, 4100), "general_inquiry": (0.06, 3000),
       "cot_collection": (0.10, 240), "glaive": (0.09, 7000)}
WORDS = sorted({w for _, facts, ans in samples.TOPICS for w in re.findall(r"[a-z]+", " ".join(facts + [ans]).lower())})


def _text(rng, chars: int) -> str:
  out, n = [], 0
  while n < chars:
    s = " ".join(rng.choice(WORDS, size=rng.integers(6, 18))).capitalize() + "."
    out.append(s)
    n += len(s) + 1
  return " ".join(out)


def _qid(rng) -> str:
  return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=12))


def write_synthetic(root: str, n: int, seed: int = 0) -> dict[str, SourceConfig]:
  """Writes n rows split by MIX into the five layouts under root; returns source configs."""
  rng = np.random.default_rng(seed)
  srcs = {}
  for kind, (share, median) in MIX.items():
    k = max(1, int(n * share))
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    lens = np.clip(rng.lognormal(np.log(median), 0.5, size=k), 60, 40000).astype(int)
    qs = [f"Question {_qid(rng)}: " + _text(rng, 150) for _ in range(k)]
    traces = [_text(rng, int(l * 0.85)) for l in lens]
    answers = [_text(rng, min(1200, max(6, int(l * 0.15)))) for l in lens]
    path = os.path.join(root, kind)
    if kind == "raiden":
      with open(os.path.join(path, "part1.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "response"])
        w.writerows((q, f"<think>\n{t}\n</think>\n\n{a}") for q, t, a in zip(qs, traces, answers))
    elif kind == "cot_collection":
      with open(os.path.join(path, "cot.json"), "w") as f:
        json.dump({str(i): {"source": q, "rationale": t, "target": a[:8], "task": "qa", "type": "CoT"}
                   for i, (q, t, a) in enumerate(zip(qs, traces, answers))}, f)
    else:
      with open(os.path.join(path, "rows.jsonl"), "w") as f:
        for q, t, a in zip(qs, traces, answers):
          row = {"openo1": {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"},
                 "general_inquiry": {"question": q, "answer": a,
                                     "metadata": {"reasoning": f"<think>{t}</think>", "difficulty": 3}},
                 "glaive": {"prompt": q, "response": f"<think>\n{t}\n</think>\n\n{a}"}}[kind]
          f.write(json.dumps(row) + "\n")
    srcs[kind] = SourceConfig(kind=kind, path=path)
  return srcs


def loader_stats(cfg: DataConfig, seq_len: int, batch: int = 8, max_batches: int = 400):
  """(real tokens/s, packing efficiency) over up to max_batches batches of one epoch."""
  it = loader.make_iterator(cfg, "train", batch, seq_len, epochs=1)
  next(it)  # start-up (threads, file open) is not throughput
  real = total = 0
  t0 = time.perf_counter()
  for i, b in enumerate(it):
    real += int((b["segment_ids"] > 0).sum())
    total += b["segment_ids"].size
    if i + 1 >= max_batches:
      break
  dt = time.perf_counter() - t0
  return real / dt, real / total


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--n", type=int, default=10000)
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--max_target_tokens", type=int, default=768)
  p.add_argument("--bins", type=int, default=DataConfig().packing_bins)
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    srcs = write_synthetic(os.path.join(tmp, "raw"), args.n)
    base = DataConfig(sources=srcs, max_seq_len=2048, max_target_tokens=args.max_target_tokens, long_policy="truncate",
                      num_workers=args.workers, packing_bins=args.bins, eval_fraction=0.0, dedup=dataclasses.replace(
                          DataConfig().dedup), output_dir=os.path.join(tmp, "out2048"))
    t0 = time.perf_counter()
    m = prepare.prepare(base, force=True)
    dt = time.perf_counter() - t0
    kept = m["splits"]["train"]["examples"]
    read = sum(s["read"] for s in m["sources"].values())
    tps, eff2048 = loader_stats(base, 2048)
    cfg1024 = dataclasses.replace(base, max_seq_len=1024, max_target_tokens=min(args.max_target_tokens, 1024),
                                  output_dir=os.path.join(tmp, "out1024"))
    prepare.prepare(cfg1024, force=True)
    _, eff1024 = loader_stats(cfg1024, 1024)
  print(json.dumps({
      "n_rows": read, "kept": kept, "prepare_s": round(dt, 1),
      "prepare_examples_per_s": round(read / dt, 1),
      "prepare_tokens_per_s": round(m["splits"]["train"]["tokens"] / dt),
      "prepare_100k_est_s": round(dt * 100000 / read, 1),
      "truncated": sum(s["truncated"] for s in m["sources"].values()),
      "loader_tokens_per_s": round(tps), "packing_eff_1024": round(eff1024, 4),
      "packing_eff_2048": round(eff2048, 4), "workers": args.workers, "max_target_tokens": args.max_target_tokens, "packing_bins": args.bins,
      "tokenizer": "bundled sample (vocab 1024)"}))


if __name__ == "__main__":
  main()
