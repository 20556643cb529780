"""What `prepare` writes: shards, record texts, preview, histogram, and the manifest.

The manifest is the one account of a run: per source read (per file, empty files named),
passed, kept, dropped per reason with example `file:row`s, repairs, truncated, split counts,
token percentiles and the license; the final check's counts. `summary_lines` renders it for
the log, so the log says what the manifest says.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from jax_sft.config import DataConfig
from jax_sft.data import mix, shards, template
from jax_sft.data.tokenizer import Tokenizer

SPLITS = ("train", "eval")


def _percentiles(values: list[int]) -> dict[str, float]:
  if not values:
    return {}
  v = np.asarray(values)
  return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
          "p99": float(np.percentile(v, 99)), "max": int(v.max()), "mean": round(float(v.mean()), 1)}


def write_splits(cfg: DataConfig, seed: int, split_rows: dict[str, list[dict[str, Any]]]
                 ) -> tuple[dict[str, Any], str]:
  """Shards, `{split}.records.jsonl` and preview.jsonl; (split counts, output hash)."""
  out_hash = hashlib.blake2b(digest_size=16)
  splits = {}
  for split in SPLITS:
    rows = mix.order(split_rows[split], cfg.order, seed)
    blobs = [shards.serialize(r["tokens"], r["prompt_len"], r["id"], r["source"]) for r in rows]
    for b in blobs:
      out_hash.update(hashlib.blake2b(b, digest_size=16).digest())
    names = shards.write_shards(cfg.output_dir, split, blobs, cfg.records_per_shard)
    with open(os.path.join(cfg.output_dir, f"{split}.records.jsonl"), "w", encoding="utf-8") as f:
      for r in rows:
        f.write(json.dumps({k: r[k] for k in ("id", "source", "question", "reasoning", "answer", "metadata")},
                           ensure_ascii=False) + "\n")
    splits[split] = {"examples": len(rows), "tokens": int(sum(len(r["tokens"]) for r in rows)),
                     "shards": names}
    if split == "train":
      with open(os.path.join(cfg.output_dir, "preview.jsonl"), "w", encoding="utf-8") as f:
        for r in rows[:cfg.preview_rows]:
          text = template.render_example(r["question"], r["reasoning"], r["answer"])
          f.write(json.dumps({"id": r["id"], "source": r["source"], "text": text}, ensure_ascii=False) + "\n")
  return splits, out_hash.hexdigest()


def source_entry(name: str, src, counts, by_source, chosen, split_rows) -> dict[str, Any]:
  """The manifest's account of one source."""
  dropped = dict(sorted(counts.dropped[name].items()))
  files = counts.files[name]
  return {
      "kind": src.kind, "path": src.path, "license": src.license or "unknown (set sources.<name>.license)",
      "asked": src.count, "read": counts.read[name], "files": files,
      "empty_files": [f for f, n in files.items() if n == 0],
      "passed": len(by_source[name]), "kept": len(chosen[name]),
      "unused_by_mix": len(by_source[name]) - len(chosen[name]),
      "dropped": dropped, "dropped_total": sum(dropped.values()), "truncated": counts.truncated[name],
      "repairs": dict(sorted(counts.repairs[name].items())),
      "train": sum(r["source"] == name for r in split_rows["train"]),
      "eval": sum(r["source"] == name for r in split_rows["eval"]),
      "tokens": _percentiles([len(r["tokens"]) for r in chosen[name]]),
      "model_turn_tokens": _percentiles([r["target_len"] for r in chosen[name]]),
      "drop_examples": counts.examples[name],
  }


def manifest(cfg: DataConfig, seed: int, h: str, out_hash: str, splits, per_source, notes,
             final_check) -> dict[str, Any]:
  """The whole manifest (written as manifest.json)."""
  tok = Tokenizer(cfg.tokenizer)
  return {
      "content_hash": h, "output_hash": out_hash, "tokenizer": tok.path, "vocab_size": tok.vocab_size,
      "max_seq_len": cfg.max_seq_len, "max_target_tokens": cfg.max_target_tokens,
      "long_policy": cfg.long_policy, "seed": seed, "order": cfg.order, "splits": splits,
      "sources": per_source, "final_check": final_check, "notes": notes,
      "licenses": {n: per_source[n]["license"] for n in per_source},
  }


def summary_lines(m: dict[str, Any]) -> list[str]:
  """The manifest in a few lines, for the log: per source what was read, kept and dropped."""
  lines = []
  for name, s in m["sources"].items():
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none"
    repairs = ", ".join(f"{k} {v}" for k, v in s.get("repairs", {}).items()) or "none"
    lines.append(f"{name}: read {s['read']}, passed {s['passed']}, kept {s['kept']}, "
                 f"dropped {s['dropped_total']} ({dropped}); repaired: {repairs}; truncated {s['truncated']}")
    for f in s.get("empty_files", []):
      lines.append(f"{name}: read 0 rows from {f}")
  fc = m.get("final_check", {})
  if fc:
    failed = ", ".join(f"{k} {v}" for k, v in fc["failed"].items()) or "none failed"
    lines.append(f"final check: {fc['checked']} examples checked, {fc['passed']} passed ({failed})")
  return lines


def histogram(output_dir: str, chosen: dict[str, list[dict[str, Any]]]) -> None:
  """lengths.png: tokens per example, per source."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (heavy; loaded when first plotted)
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, rows in chosen.items():
    if rows:
      ax.hist([len(r["tokens"]) for r in rows], bins=40, alpha=0.5, label=f"{name} ({len(rows)})")
  ax.set_xlabel("tokens per example")
  ax.set_ylabel("examples")
  ax.set_title("Token lengths per source")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(output_dir, "lengths.png"), dpi=80)
  plt.close(fig)


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` to `path` atomically (a reader never sees half a manifest)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, ensure_ascii=False)
  os.replace(tmp, path)
