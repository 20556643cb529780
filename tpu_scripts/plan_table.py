#!/usr/bin/env python3
"""Refresh the plan table in docs/tpu.md: `jax-sft plan` for each real config on v5e-8.

  python tpu_scripts/plan_table.py                 # compile every row (minutes each), render
  python tpu_scripts/plan_table.py --only gemma2_2b_full_s1_2048   # recompile some rows
  python tpu_scripts/plan_table.py --render-only   # re-render from docs/tpu_plan.jsonl
  python tpu_scripts/plan_table.py --only gemma3_270m_lora_s1_2048 --find-batch  # + largest batch

Each row runs `jax-sft plan --json` in its own process (a full-size compile holds several
GB) and its JSON line is kept in docs/tpu_plan.jsonl, keyed by row name, so rows can be
refreshed one at a time, also from several invocations at once (a compile is mostly one
core, but a 1B-2B compile holds 10-14 GB of host memory: run lanes side by side only where
the memory is there). The table goes between the plan-table markers in docs/tpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "tpu.md")
RESULTS = os.path.join(REPO, "docs", "tpu_plan.jsonl")
START, END = "<!-- plan-table:start -->", "<!-- plan-table:end -->"
GiB = 2**30
REAL = 0.4  # share of the roofline a real step is assumed to reach (40% MFU)

# (row name, config, extra overrides). The *_b8 rows use Tunix's setting (global batch 8,
# one sequence per chip) so the per-chip memory compares with bench/README.md.
ROWS = [
    ("gemma2_2b_full_s1_2048", "configs/gemma2_2b_full_s1_2048.yaml", []),
    ("gemma2_2b_lora_s1_2048", "configs/gemma2_2b_lora_s1_2048.yaml", []),
    ("gemma2_2b_full_s1_1024", "configs/gemma2_2b_full_s1_1024.yaml", []),
    ("gemma2_2b_lora_s1_1024", "configs/gemma2_2b_lora_s1_1024.yaml", []),
    ("gemma3_1b_full_s1_2048", "configs/gemma3_1b_full_s1_2048.yaml", []),
    ("gemma3_1b_lora_s1_2048", "configs/gemma3_1b_lora_s1_2048.yaml", []),
    ("gemma3_1b_full_s1_1024", "configs/gemma3_1b_full_s1_1024.yaml", []),
    ("gemma3_1b_lora_s1_1024", "configs/gemma3_1b_lora_s1_1024.yaml", []),
    # The real-Gemma rehearsal's model (Gemma 3 270M) on the users' mix and slice.
    ("gemma3_270m_full_s1_2048", "configs/gemma3_1b_full_s1_2048.yaml",
     ["model.preset=gemma3_270m"]),
    ("gemma3_270m_lora_s1_2048", "configs/gemma3_1b_lora_s1_2048.yaml",
     ["model.preset=gemma3_270m"]),
    ("gemma2_2b_full_2048_b8", "configs/gemma2_2b_full_s1_2048.yaml", ["train.batch_size=8"]),
    ("gemma2_2b_full_1024_b8", "configs/gemma2_2b_full_s1_1024.yaml", ["train.batch_size=8"]),
    ("gemma2_2b_lora_2048_b8", "configs/gemma2_2b_lora_s1_2048.yaml", ["train.batch_size=8"]),
]


def load_results() -> dict[str, dict]:
  if not os.path.exists(RESULTS):
    return {}
  with open(RESULTS, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r["row"]: r for r in rows}


@contextlib.contextmanager
def _locked():
  """Holds docs/tpu_plan.jsonl.lock: invocations compiling rows at once take turns to write."""
  with open(RESULTS + ".lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


def save_row(row: dict) -> dict[str, dict]:
  """Adds one row to docs/tpu_plan.jsonl as it is on disk now (other invocations may have
  added rows since this one started), through a temporary file; returns every row."""
  with _locked():
    results = load_results()
    results[row["row"]] = row
    tmp = RESULTS + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for name, _, _ in ROWS:
        if name in results:
          f.write(json.dumps(results[name]) + "\n")
    os.replace(tmp, RESULTS)
  return results


def compile_row(name: str, config: str, overrides: list[str], topology: str,
                runner: list[str], find_batch: bool = False) -> dict:
  """Runs `jax-sft plan --json` for one row; returns its JSON (or the error).

  With `find_batch`, the row is the config's own batch (the search compiles it first) and
  `largest_batch` the largest global batch the search found to fit.
  """
  cmd = [sys.executable, *runner, "plan", config, *overrides,
         "--topology", topology, "--json"] + (["--find-batch"] if find_batch else [])
  print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
  plans = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  if not plans:
    if out.returncode < 0:  # the kernel's OOM killer sends SIGKILL and leaves no message
      error = f"killed by signal {-out.returncode} (SIGKILL: out of host memory?)"
    else:
      error = (out.stderr.strip().splitlines() or ["no output"])[-1][:300]
    return {"row": name, "config": config, "overrides": overrides, "error": error}
  row = dict(plans[0] if find_batch else plans[-1], row=name, config=config,
             overrides=overrides)
  if find_batch:
    fitting = [p["batch_size"] for p in plans if p["fits"]]
    row["largest_batch"] = max(fitting) if fitting else 0
  return row


def _largest(r: dict) -> str:
  """The largest-batch cell: the batch, "none fits" (searched, nothing fit) or "not searched"."""
  if "largest_batch" not in r:
    return "not searched"
  return str(r["largest_batch"]) if r["largest_batch"] else "none fits"


def render(results: dict[str, dict]) -> str:
  """The Markdown table for every row with a result."""
  head = ("| row | mode | global batch x seq | per chip: args / temp / total GiB | verdict "
          "| XLA TFLOP/step/chip | roofline tokens/s | h per epoch: roofline / at 40% | "
          "epochs in 8.5 h at 40% | largest global batch |\n"
          "|---|---|---|---|---|---|---|---|---|---|\n")
  body, notes = [], []
  for name, _, _ in ROWS:
    r = results.get(name)
    if r is None:
      continue
    if r.get("note"):
      notes.append(f"{name}: {r['note']}")
      name += " (note)"
    if "error" in r and "fits" not in r:
      body.append(f"| {name} | | | | plan failed: {r['error']} | | | | | |")
      continue
    mem = (f"{r['argument_bytes'] / GiB:.2f} / {r['temp_bytes'] / GiB:.2f} / "
           f"**{r['total_bytes'] / GiB:.2f}**") if r["total_bytes"] else "compiler: out of HBM"
    verdict = "fits" if r["fits"] else "does not fit"
    body.append(
        f"| {name} | {r['mode']} | {r['batch_size']} x {r['seq_len']} | {mem} | {verdict} "
        f"| {r['flops'] / 1e12:.1f} | {r['tokens_per_s']:,.0f} "
        f"| {r['hours_per_epoch']:.2f} / {r['hours_per_epoch'] / REAL:.2f} "
        f"| {r['epochs_in_budget'] * REAL:.1f} "
        f"| {_largest(r)} |")
  foot = "".join(f"\n(note) {n}\n" for n in notes)
  return head + "\n".join(body) + "\n" + foot


def write_doc(table: str) -> None:
  with open(DOC, encoding="utf-8") as f:
    text = f.read()
  if START not in text or END not in text:
    raise SystemExit(f"{DOC}: add the markers {START} and {END} where the table goes")
  before, rest = text.split(START, 1)
  _, after = rest.split(END, 1)
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(before + START + "\n" + table + END + after)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--topology", default="v5e-8")
  p.add_argument("--only", nargs="*", help="row names to recompile (default: all)")
  p.add_argument("--render-only", action="store_true")
  p.add_argument("--find-batch", action="store_true",
                 help="also search the largest global batch that fits (4-7 compiles a row)")
  p.add_argument("--runner", default="-m jax_sft.cli",
                 help="how to start the CLI under this Python (a wrapper script for testing)")
  args = p.parse_args()
  if not args.render_only:
    for name, config, overrides in ROWS:
      if args.only and name not in args.only:
        continue
      save_row(compile_row(name, config, overrides, args.topology, args.runner.split(),
                           args.find_batch))
  with _locked():
    table = render(load_results())  # with the rows other invocations added meanwhile
    write_doc(table)
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
