"""`jax-sft plan CONFIG --topology v5e-8 [--find-batch] [key.path=value ...]`.

Compiles the train step for a TPU slice on this (CPU) machine and says whether it fits.
Exit status: 0 fits, 1 does not fit, 2 cannot plan (bad config, no libtpu).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from jax_sft import config as config_lib
from jax_sft.tpu import memory
from jax_sft.tpu import plan as plan_lib
from jax_sft.tpu import topologies
from jax_sft.train import compile_cache
from jax_sft.train.mesh import MeshError

GiB = 2**30


def add_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("config", help="run config YAML")
  p.add_argument("--topology", default="v5e-8",
                 help="TPU slice: v5e-8 (Kaggle), v5e-4, v4-8, v5p-8, v6e-8, v3-8, v5e-16, ...")
  p.add_argument("--find-batch", action="store_true",
                 help="search the largest per-device batch that fits")
  p.add_argument("--max-per-device", type=int, default=64, help="--find-batch's upper limit")
  p.add_argument("--hbm-gib", type=float, default=None,
                 help="HBM per device to fit into (default: the chip's)")
  p.add_argument("--time-budget", default=None,
                 help="session length for epochs-in-budget (default: train.time_budget or 8h30m)")
  p.add_argument("--json", action="store_true", help="one JSON line per plan on stdout")
  p.add_argument("--memory", metavar="DIR", default=None,
                 help="dump XLA's buffer assignment into DIR and print what is live at the"
                      " peak, by kind (loss chunks, attention, activations, gradients, ...)")
  p.add_argument("overrides", nargs="*", help="config overrides key.path=value")


def _gib(b: float) -> str:
  return f"{b / GiB:6.2f} GiB"


def describe(p) -> str:
  """A human-readable report of one Plan."""
  lines = [
      f"{p.topology}: {p.num_devices} x {p.device_kind}, mesh {p.mesh}, {p.mode} {p.objective.upper()},"
      f" global batch {p.batch_size} x seq {p.seq_len}, {p.attention} attention"
      f" (compiled in {p.compile_s:.0f}s)"]
  if p.total_bytes:
    lines += [
        "per device:",
        f"  arguments {_gib(p.argument_bytes)}   outputs {_gib(p.output_bytes)}"
        f"   (aliased {_gib(p.alias_bytes)})",
        f"  temporary {_gib(p.temp_bytes)}   code {_gib(p.code_bytes)}",
        f"  total     {_gib(p.total_bytes)} of {_gib(p.hbm_bytes)} HBM",
        f"  XLA flops/step {p.flops:.3e}; roofline step ({p.roofline}) {p.optimal_seconds * 1e3:.1f} ms"
        f" -> at most {p.tokens_per_s:,.0f} tokens/s (whole slice)",
    ]
    if p.objective == "grpo":
      lines.insert(1, f"GRPO: sampler {_gib(p.grpo_sample_bytes)}, update"
                      f" {_gib(p.grpo_update_bytes)} per device; the larger is shown below")
    ep = p.epoch or {}
    if ep.get("rows"):
      lines.append(
          f"  epoch ({ep['source']}): {ep['examples']:,} examples, {ep['tokens']:,} tokens,"
          f" {ep['rows']:,} packed rows -> {p.hours_per_epoch:.2f} h at the roofline;"
          f" {p.epochs_in_budget:.2f} epochs in {p.budget_hours:.2f} h")
    else:
      lines.append("  epoch: unknown (no data.sources counts and no prepared manifest)")
  if p.checkpoint_bytes:
    gb = p.checkpoint_bytes / 1e9
    room = plan_lib.KAGGLE_OUTPUT_BYTES / 1e9
    lines.append(f"checkpoint (weights + optimizer state): {gb:.2f} GB; Kaggle saves {room:.0f} GB"
                 + (" -> fits, resumable across sessions" if gb <= room * 0.975 else
                    " -> does NOT fit: sessions continue from the export (fresh optimizer);"
                    " model.param_dtype=bfloat16 (the compact state) or LoRA keeps it"))
  lines.append(p.verdict)
  return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
  try:
    topology = topologies.get(args.topology)
  except ValueError as e:
    print(f"jax-sft plan: {e}", file=sys.stderr)
    return 2
  if not topologies.libtpu_available():
    print(f"jax-sft plan: {topologies.INSTALL_HINT}", file=sys.stderr)
    return 2
  cfg = config_lib.load(args.config, args.overrides)
  compile_cache.enable(cfg.checkpoint.compilation_cache_dir)
  log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print
  log(f"compiling {os.path.basename(args.config)} for {topology.name}"
      f" ({topology.libtpu_name}, {topology.num_hosts} host(s)) ...")
  try:
    if args.find_batch:
      best, plans = plan_lib.find_batch(cfg, topology, hbm_gib=args.hbm_gib,
                                        max_per_device=args.max_per_device,
                                        time_budget=args.time_budget, log=log,
                                        memory_dir=args.memory)
    else:
      best = plan_lib.plan(cfg, topology, hbm_gib=args.hbm_gib, time_budget=args.time_budget,
                           memory_dir=args.memory)
      plans = [best]
  except MeshError as e:
    print(f"jax-sft plan: {e}", file=sys.stderr)
    return 2
  if args.json:
    for p in plans:
      print(json.dumps(dict(dataclasses.asdict(p), verdict=p.verdict)), flush=True)
  if args.memory and best is not None and best.memory_kinds:
    log(memory.render_kinds(best.memory_kinds, best.temp_bytes))
  if args.find_batch:
    if best is None:
      log("no per-device batch fits, not even 1: try LoRA, model.remat=full,"
          " a shorter data.max_seq_len, or a bigger slice")
      return 1
    per_device = best.batch_size // (best.mesh["data"] * best.mesh["fsdp"] * cfg.train.grad_accum)
    log(describe(best))
    log(f"largest per-device batch that fits: {per_device}"
        f" (train.batch_size={best.batch_size})")
    return 0
  log(describe(best))
  return 0 if best.fits else 1
