"""The training loop: the story of one session of a run.

prepare the data -> build the mesh -> start (fresh / resume / warm) -> step, log, eval,
checkpoint -> stop at the end, on a signal or at the time budget -> save, plot, sample.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Optional

import jax
import numpy as np

from jax_sft import config as config_lib
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import data_feed
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import metrics as metrics_lib
from jax_sft.train import optimizer as opt_lib
from jax_sft.train import session, step as step_lib, stopping, weights


@dataclasses.dataclass
class Result:
  """What a session did."""

  start_step: int
  end_step: int
  total_steps: int
  losses: list[float]  # train loss of every step this session ran
  eval_loss: Optional[float]
  stopped_because: str
  checkpoint_dir: str


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[train] {msg}", flush=True)


def train(cfg: config_lib.Config, *, resume: bool = False, init_from: Optional[str] = None,
          init_optimizer: bool = False, progress: bool = True) -> Result:
  """Runs one session of `cfg`; returns when done, on a signal or at the time budget."""
  stop = stopping.StopFlags(cfg.train.time_budget).install()
  try:
    return _train(cfg, stop, resume, init_from or cfg.train.init_from,
                  init_optimizer or cfg.train.init_optimizer, progress)
  finally:
    stop.uninstall()


def _train(cfg, stop, resume, init_from, init_optimizer, progress) -> Result:
  mesh_lib.maybe_initialize_distributed(cfg.mesh)
  from jax_sft.tpu import compile_cache
  compile_cache.enable(cfg.checkpoint.compilation_cache_dir)
  mesh = mesh_lib.make_mesh(cfg.mesh)
  mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.train.grad_accum)
  log(f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.devices()[0].platform}"
      f" devices, {jax.process_count()} process(es)")

  manifest = data_feed.prepare(cfg)
  total_steps = data_feed.total_steps(cfg, manifest)
  tx = opt_lib.make_optimizer(cfg.train, total_steps)
  schedule = opt_lib.make_schedule(cfg.train, total_steps)
  ckpt_dir = cfg.checkpoint.directory or os.path.join(cfg.run_dir, "checkpoints")
  ckpt = ckpt_lib.Checkpointer(ckpt_dir, cfg.checkpoint)
  train_iter = data_feed.train_iterator(cfg, total_steps)
  start = session.build(cfg, mesh, tx, ckpt, resume=resume, init_from=init_from,
                        init_optimizer=init_optimizer, data_iter=train_iter)
  log(start.note)
  if jax.process_index() == 0:
    os.makedirs(cfg.run_dir, exist_ok=True)
    with open(os.path.join(cfg.run_dir, "config.yaml"), "w", encoding="utf-8") as f:
      f.write(config_lib.to_yaml(cfg))

  from jax_sft.model.gemma import Transformer
  model = Transformer(cfg.model, cfg.lora if cfg.lora.enabled else None)
  step_fn = step_lib.jit_train_step(
      step_lib.make_train_step(model, cfg.model, tx, schedule, lora=cfg.lora.enabled,
                               grad_accum=cfg.train.grad_accum),
      mesh, start.state_sh, start.frozen_sh, cfg.train.xla_opt_level)
  eval_fn = step_lib.make_eval_step(model, cfg.model, mesh, start.state_sh.params,
                                    start.frozen_sh, lora=cfg.lora.enabled,
                                    xla_opt_level=cfg.train.xla_opt_level)
  meta = {"lora": cfg.lora.enabled, "base_weights": weights.base_reference(cfg),
          "manifest_hash": manifest.get("content_hash", manifest.get("hash")),
          "total_steps": total_steps,
          "trainable_params": sum(x.size for x in jax.tree.leaves(start.state.params))}
  writer = metrics_lib.MetricsWriter(cfg.run_dir)
  # Compile ahead of the first step, so step times (and the time budget) are honest.
  t0 = time.perf_counter()
  step_fn = step_fn.lower(start.state, start.frozen, data_feed.abstract_batch(cfg, mesh)).compile()
  log(f"train step compiled in {time.perf_counter() - t0:.1f}s")

  state, frozen = start.state, start.frozen
  step = int(jax.device_get(state.step))
  first_step = step
  log(f"steps {step} -> {total_steps} (batch {cfg.train.batch_size} x"
      f" {cfg.data.max_seq_len}, grad_accum {cfg.train.grad_accum})")
  losses: list[float] = []
  eval_loss = None
  reason = "finished"
  bar = _progress_bar(progress, step, total_steps)
  step_s, save_s = 0.0, 0.0
  window = {"tokens": 0, "real": 0, "seconds": 0.0, "loss": []}
  while step < total_steps:
    reason_now = stop.should_stop(step_s, save_s)
    if reason_now:
      reason = reason_now
      break
    host_batch = next(train_iter, None)
    if host_batch is None:
      reason = "finished: data exhausted"
      break
    t0 = time.perf_counter()
    state, m = step_fn(state, frozen, data_feed.to_device(host_batch, mesh, cfg.train.batch_size))
    m = jax.device_get(m)  # one sync per step keeps step_s honest for the time budget
    step += 1
    step_s = time.perf_counter() - t0
    losses.append(float(m["loss"]))
    window["tokens"] += host_batch["inputs"].size
    window["real"] += int(np.count_nonzero(host_batch["segment_ids"]))
    window["seconds"] += step_s
    window["loss"].append(float(m["loss"]))
    if step % cfg.train.log_every == 0 or step == total_steps or step == first_step + 1:
      tok_s = window["tokens"] / max(window["seconds"], 1e-9)
      writer.write(step, "train", {
          "loss": float(np.mean(window["loss"])), "lr": float(m["lr"]),
          "grad_norm": float(m["grad_norm"]), "tokens_per_s": tok_s,
          "real_tokens_per_s": window["real"] / max(window["seconds"], 1e-9),
          "loss_tokens": float(m["loss_tokens"]), "seconds": stop.elapsed()})
      window = {"tokens": 0, "real": 0, "seconds": 0.0, "loss": []}
      if bar is not None:
        bar.set_postfix(loss=f"{float(m['loss']):.3f}", tok_s=f"{tok_s:.0f}")
    if bar is not None:
      bar.update(1)
    if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total_steps:
      eval_loss = _evaluate(cfg, eval_fn, state, frozen, mesh, writer, step)
    every = cfg.eval.during_training_every
    if every and step % every == 0 and step < total_steps:
      _log_compliance(cfg, state, frozen, writer, step)
    if step < total_steps and ckpt.due(step):
      t_save = time.perf_counter()
      ckpt.save(step, state, train_iter, cfg, meta)
      save_s = max(save_s, time.perf_counter() - t_save)
  if bar is not None:
    bar.close()
  log(f"stopped at step {step}/{total_steps}: {reason}")

  if cfg.checkpoint.save_at_end and step > first_step:
    t_save = time.perf_counter()
    ckpt.save(step, state, train_iter, cfg, meta)
    ckpt.wait()
    log(f"final checkpoint saved in {time.perf_counter() - t_save:.1f}s")
  ckpt.close()
  if reason.startswith("finished"):
    eval_loss = _evaluate(cfg, eval_fn, state, frozen, mesh, writer, step)
    plot = metrics_lib.plot_losses(cfg.run_dir)
    if plot:
      log(f"loss curves: {plot}")
    if cfg.train.generations_at_end > 0:
      from jax_sft.train import samples
      samples.print_generations(cfg, model, state, frozen)
    if cfg.eval.at_end:
      _final_eval(cfg)
  writer.close()
  return Result(first_step, step, total_steps, losses, eval_loss, reason, ckpt.directory)


def _evaluate(cfg, eval_fn, state, frozen, mesh, writer, step) -> Optional[float]:
  """Token-weighted eval loss and perplexity over the first eval_batches batches."""
  loss_sum, count = 0.0, 0.0
  rows = data_feed.eval_batch_size(cfg, mesh)
  for host_batch in data_feed.eval_batches(cfg, rows):
    s, c = jax.device_get(eval_fn(state.params, frozen, data_feed.to_device(host_batch, mesh, rows)))
    loss_sum, count = loss_sum + float(s), count + float(c)
  if count == 0:
    return None
  loss = loss_sum / count
  writer.write(step, "eval", {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                              "loss_tokens": count})
  log(f"step {step}: eval loss {loss:.4f} perplexity {math.exp(min(loss, 50.0)):.2f}")
  return loss


def _log_compliance(cfg, state, frozen, writer, step) -> None:
  """The short evaluation during training: format compliance of a few held-out prompts."""
  from jax_sft.data import prepare
  from jax_sft.data.tokenizer import Tokenizer
  from jax_sft.eval import evaluate
  try:
    records = prepare.read_records(cfg.data.output_dir, "eval")
  except FileNotFoundError:
    return
  questions = [r["question"] for r in records[:cfg.eval.during_training_prompts]]
  params, lora = (frozen, state.params) if cfg.lora.enabled else (state.params, None)
  rate = evaluate.quick_compliance(jax.device_get(params), jax.device_get(lora), cfg,
                                   Tokenizer(cfg.data.tokenizer), questions)
  writer.write(step, "eval", {"compliance": rate})
  log(f"step {step}: format compliance {rate:.0%} of {len(questions)} held-out prompts")


def _final_eval(cfg) -> None:
  """`jax-sft eval` of the run's last checkpoint: report.json and report.md in run_dir/eval."""
  if jax.process_count() > 1:
    log("final eval skipped on a multi-host run: run `jax-sft eval` on one host")
    return
  from jax_sft.eval import evaluate
  report = evaluate.evaluate(cfg, cfg.run_dir, log=log)
  log(f"eval report: {os.path.join(cfg.run_dir, 'eval', 'report.md')}"
      f" (format compliance {report['summary']['compliance_rate'] or 0.0:.0%})")


def _progress_bar(enabled: bool, start: int, total: int):
  if not enabled or jax.process_index() != 0:
    return None
  from tqdm import tqdm
  return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
