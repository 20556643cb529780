"""Data benchmark: prepare and loader throughput, packing efficiency. Prints one JSON line.

Synthetic rows in the real layouts, in the core mix's proportions (62.9K Raiden : 20K OpenO1 :
6K General_Inquiry : 10K CoT-Collection), with model-side lengths drawn from log-normals fitted
to REFERENCE.md (characters): Raiden median 9.8K, 1st pct 2.9K, 99th 37K (sigma 0.55);
OpenO1 median 4.1K; General_Inquiry median 3K; CoT-Collection rationale median 240, target 6
(no spread published for these three: sigma 0.5, 0.5, 0.6 assumed). Tokenized with the bundled
sample tokenizer. Packing is measured at seq 1024 and 2048, with and without the model-turn cap.
Usage: python bench/bench_data.py [--n 10000] [--pack_n 4000] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

from jax_sft.data import loader, prepare
from jax_sft.config import DataConfig, SourceConfig
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import sample_texts as samples  # noqa: E402  (the repo's dev tools)

# kind: (share of rows, median model-side chars, sigma of log chars)
MIX = {"raiden": (62.9 / 98.9, 9800, 0.55), "openo1": (20 / 98.9, 4100, 0.5),
       "general_inquiry": (6 / 98.9, 3000, 0.5), "cot_collection": (10 / 98.9, 240, 0.6)}
WORDS = np.array(sorted({w for _, facts, ans in samples.TOPICS
                         for w in re.findall(r"[a-z]+", " ".join(facts + [ans]).lower())}))
_CHARS_PER_WORD = float(np.mean([len(w) for w in WORDS])) + 1


def _text(rng, chars: int) -> str:
  """Random sentences of 6-17 words, about `chars` characters."""
  n = max(3, int(chars / _CHARS_PER_WORD))
  words = WORDS[rng.integers(0, len(WORDS), n)].tolist()
  ends = np.cumsum(rng.integers(6, 18, size=n // 6 + 2))
  starts = [0] + [int(e) for e in ends if e < n]
  for a in starts:
    words[a] = words[a].capitalize()
  for e in starts[1:] + [n]:
    words[e - 1] += "."
  return " ".join(words)


def _qid(rng) -> str:
  return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=12))


def write_synthetic(root: str, n: int, seed: int = 0) -> dict[str, SourceConfig]:
  """Writes n rows split by MIX into the five layouts under root; returns source configs."""
  rng = np.random.default_rng(seed)
  srcs = {}
  for kind in MIX:
    k = max(1, int(n * MIX[kind][0]))
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    share, median, sigma = MIX[kind]
    lens = np.clip(rng.lognormal(np.log(median), sigma, size=k), 60, 60000).astype(int)
    qs = [f"Question {_qid(rng)}: " + _text(rng, int(rng.lognormal(np.log(200), 0.6))) for _ in range(k)]
    if kind == "cot_collection":  # rationale + a short target (median 6 characters)
      traces = [_text(rng, int(l)) for l in lens]
      answers = [_text(rng, 6)[:max(1, int(rng.lognormal(np.log(6), 0.5)))] for _ in lens]
    else:
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
        json.dump({str(i): {"source": q, "rationale": t, "target": a, "task": "qa", "type": "CoT"}
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


def loader_stats(cfg: DataConfig, seq_len: int, batch: int = 8, max_batches: int = 400, epochs=1):
  """(real tokens/s, packing efficiency) over up to max_batches batches."""
  it = loader.make_iterator(cfg, "train", batch, seq_len, epochs=epochs)
  next(it)  # start-up (threads, file open) is not throughput
  real = total = 0
  t0 = time.perf_counter()
  for i, b in enumerate(it):
    real += int((b["segment_ids"] > 0).sum())
    total += b["segment_ids"].size
    if max_batches and i + 1 >= max_batches:
      break
  dt = time.perf_counter() - t0
  return real / dt, real / total


def packing_bound(cfg: DataConfig, seq_len: int) -> float:
  """An upper bound on packing efficiency for the prepared lengths, whatever the packer.

  No row holds k examples longer than seq_len / (k + 1), so rows >= count(len > seq/(k+1)) / k;
  the bound is real tokens / (seq_len * the largest such row count).
  """
  import grain  # pylint: disable=g-import-not-at-top
  from jax_sft.data import shards  # pylint: disable=g-import-not-at-top
  src = grain.sources.ArrayRecordDataSource(shards.shard_paths(cfg.output_dir, "train"))
  lens = np.array([len(shards.deserialize_tokens(src[i])[0]) - 1 for i in range(len(src))])  # shifted
  rows = max([np.ceil(lens.sum() / seq_len)] + [np.ceil((lens > seq_len / (k + 1)).sum() / k) for k in range(1, 16)])
  return float(lens.sum() / (rows * seq_len))


def _config(srcs, out: str, seq_len: int, cap: int, args) -> DataConfig:
  return DataConfig(sources=srcs, max_seq_len=seq_len, max_target_tokens=min(cap, seq_len),
                    long_policy="truncate", num_workers=args.workers, packing_bins=args.bins,
                    eval_fraction=0.0, output_dir=out)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--n", type=int, default=10000, help="rows for the prepare/loader throughput run")
  p.add_argument("--pack_n", type=int, default=4000, help="rows for each packing run (0 = skip)")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--max_target_tokens", type=int, default=768)
  p.add_argument("--bins", type=int, default=DataConfig().packing_bins)
  args = p.parse_args()
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    srcs = write_synthetic(os.path.join(tmp, "raw"), args.n)
    base = _config(srcs, os.path.join(tmp, "out"), 2048, args.max_target_tokens, args)
    t0 = time.perf_counter()
    m = prepare.prepare(base, force=True)
    dt = time.perf_counter() - t0
    read = sum(s["read"] for s in m["sources"].values())
    tps, _ = loader_stats(base, 2048)
    out.update({
        "n_rows": read, "kept": m["splits"]["train"]["examples"], "prepare_s": round(dt, 1),
        "prepare_examples_per_s": round(read / dt, 1),
        "prepare_tokens_per_s": round(m["splits"]["train"]["tokens"] / dt),
        "prepare_100k_est_s": round(dt * 100000 / read, 1),
        "truncated": sum(s["truncated"] for s in m["sources"].values()),
        "loader_tokens_per_s": round(tps)})
    if args.pack_n:
      psrcs = write_synthetic(os.path.join(tmp, "raw_pack"), args.pack_n, seed=1)
      for cap in (args.max_target_tokens, 0):
        for seq in (1024, 2048):
          cfg = _config(psrcs, os.path.join(tmp, f"pack{seq}_{cap}"), seq, cap or seq, args)
          pm = prepare.prepare(cfg, force=True)
          # Steady state, as in training (epochs repeat inside the packer): one epoch's worth
          # of tokens from a repeating stream, so the end-of-data flush of half-full bins is left out.
          _, eff = loader_stats(cfg, seq, max_batches=pm["splits"]["train"]["tokens"] // (8 * seq), epochs=None)
          turn = {k: v["model_turn_tokens"].get("p50") for k, v in pm["sources"].items()}
          out[f"packing_eff_{seq}_cap{cap or 'none'}"] = round(eff, 4)
          out[f"packing_bound_{seq}_cap{cap or 'none'}"] = round(packing_bound(cfg, seq), 4)
          out[f"model_turn_p50_{seq}_cap{cap or 'none'}"] = turn
  out.update({"workers": args.workers, "max_target_tokens": args.max_target_tokens, "packing_bins": args.bins,
              "tokenizer": "bundled sample (vocab 1024)"})
  print(json.dumps(out))


if __name__ == "__main__":
  main()
