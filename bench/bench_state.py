"""What the compact train state costs: float32 vs bfloat16 master weights and Adam moments.

Trains the smoke config's tiny Gemma on the bundled samples three times, in one sitting,
identical but for the state: float32; bfloat16 with stochastic rounding (the compact
state, train/precision.py); bfloat16 rounded to nearest. Prints one JSON line per variant
(loss curve, held-out loss, the checkpoint's size) and one comparing them.

  python bench/bench_state.py [--steps 200] [--lr 3e-4]
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import sys
import tempfile

import numpy as np

from jax_sft import config as config_lib
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import loop, metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "float32": ["model.param_dtype=float32"],
    "bfloat16_stochastic": ["model.param_dtype=bfloat16", "train.stochastic_rounding=true"],
    "bfloat16_nearest": ["model.param_dtype=bfloat16", "train.stochastic_rounding=false"],
}


def run(name: str, overrides: list[str], root: str, steps: int, lr: float) -> dict:
  cfg = config_lib.load(os.path.join(REPO, "configs", "smoke.yaml"), [
      f"run_dir={root}/{name}", f"data.output_dir={root}/data", f"train.max_steps={steps}",
      f"train.learning_rate={lr}", "train.log_every=1", f"train.eval_every={steps // 4}",
      "train.generations_at_end=0", "eval.at_end=false", "eval.during_training_every=0",
      "checkpoint.every_steps=0", "checkpoint.async_save=false", *overrides])
  result = loop.train(cfg, progress=False)
  rows = metrics.read(os.path.join(cfg.run_dir, "metrics.jsonl"))
  train = [r["loss"] for r in rows if r["split"] == "train"]
  evals = [r["loss"] for r in rows if r["split"] == "eval" and "loss" in r]
  ckpt, step = ckpt_lib.open_read_only(cfg.run_dir)
  return {"variant": name, "steps": result.end_step, "lr": lr, "train_loss": train,
          "train_loss_last10": round(float(np.mean(train[-10:])), 4),
          "eval_loss": [round(x, 4) for x in evals],
          "checkpoint_bytes": ckpt_lib.dir_size_bytes(os.path.join(ckpt.directory, str(step)))}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--lr", type=float, default=3e-4)
  args = ap.parse_args()
  root = tempfile.mkdtemp(prefix="bench_state_")
  out = {}
  for name, overrides in VARIANTS.items():
    out[name] = run(name, overrides, root, args.steps, args.lr)
    line = {k: v for k, v in out[name].items() if k != "train_loss"}
    print(json.dumps(line), flush=True)
  ref = np.asarray(out["float32"]["train_loss"])
  summary = {"bench": "state", "steps": args.steps, "lr": args.lr}
  for name in ("bfloat16_stochastic", "bfloat16_nearest"):
    curve = np.asarray(out[name]["train_loss"])
    summary[f"{name}_max_abs_loss_gap"] = round(float(np.max(np.abs(curve - ref))), 4)
    summary[f"{name}_final_eval_gap"] = round(
        out[name]["eval_loss"][-1] - out["float32"]["eval_loss"][-1], 4)
    summary[f"{name}_checkpoint_ratio"] = round(
        out[name]["checkpoint_bytes"] / out["float32"]["checkpoint_bytes"], 3)
  print(json.dumps(summary), flush=True)
  print(f"[bench_state] runs in {root}", file=sys.stderr)


if __name__ == "__main__":
  main()
