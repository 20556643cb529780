"""The training loop: the story of one session of a run.

prepare the data -> build the trainer -> start (fresh / resume / warm) -> step, log,
evaluate, checkpoint -> stop at the end, on a signal or at the time budget -> save, plot,
and hand over to the layers above (`Hooks`: generations, the eval report).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.train import builder, compat, compile_cache, data_feed
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import metrics as metrics_lib
from jax_sft.train import objectives, session, stopping, weights

PyTree = Any
# Orbax's fixed cost of a save (directories, metadata, the commit), measured at about 1-2 s
# on a 2-core machine even for a tiny state; the budget keeps at least this much.
SAVE_OVERHEAD_S = 2.0


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


@dataclasses.dataclass
class Hooks:
  """What the layers above training run inside it (the eval package plugs in here).

  during(step, params, lora) -> metrics logged under 'eval', every `every` steps;
  at_end(cfg, params, lora) runs once after a finished run's final checkpoint.
  """

  every: int = 0
  during: Optional[Callable[[int, PyTree, Optional[PyTree]], dict]] = None
  at_end: Optional[Callable[[config_lib.Config, PyTree, Optional[PyTree]], None]] = None


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[train] {msg}", flush=True)


def train(cfg: config_lib.Config, *, resume: bool = False, init_from: Optional[str] = None,
          init_optimizer: bool = False, progress: bool = True, hooks: Hooks = Hooks(),
          resume_step: Optional[int] = None, reward_fn: Optional[Callable] = None) -> Result:
  """Runs one session of `cfg`; returns when done, on a signal or at the time budget.

  `reward_fn` scores GRPO's completions (train.objective grpo; the eval package's rewards).
  """
  stop = stopping.StopFlags(cfg.train.time_budget).install()
  try:
    return _session(cfg, stop, resume, init_from or cfg.train.init_from,
                    init_optimizer or cfg.train.init_optimizer, progress, hooks, resume_step,
                    reward_fn)
  finally:
    stop.uninstall()


def _session(cfg, stop, resume, init_from, init_optimizer, progress, hooks, resume_step,
             reward_fn) -> Result:
  mesh = _mesh(cfg)
  cfg, data_bucket = data_feed.localize(cfg)  # gs:// prepared data: read from a local mirror
  manifest = data_feed.prepare(cfg, publish_to=data_bucket)
  _check_vocab(cfg, manifest)
  total_steps = objectives.total_steps(cfg, manifest)
  trainer = builder.build(cfg, mesh, total_steps)
  ckpt = ckpt_lib.Checkpointer(cfg.checkpoint.directory or storage.join(cfg.run_dir, "checkpoints"),
                               cfg.checkpoint)
  train_iter = objectives.train_iterator(cfg, total_steps)
  manifest_hash = manifest.get("content_hash", manifest.get("hash"))
  stream = compat.stream_identity(cfg, manifest_hash)
  start = session.build(trainer, ckpt, resume=resume, init_from=init_from,
                        init_optimizer=init_optimizer, data_iter=train_iter, stream=stream,
                        resume_step=resume_step)
  log(start.note)
  _write_config(cfg)
  meta = {"lora": cfg.lora.enabled,
          "base_weights": start.base_weights or weights.base_reference(cfg),
          "manifest_hash": manifest_hash, "stream": stream, "total_steps": total_steps,
          "prepared_data": data_bucket or cfg.data.output_dir,
          "trainable_params": sum(x.size for x in jax.tree.leaves(start.state.params)),
          "state_bytes": _state_bytes(start.state)}
  t0 = time.perf_counter()  # compiled ahead of the first step: step times stay honest
  step_fn = objectives.runner(trainer, trainer.compile(), start, init_from, reward_fn)
  log(f"train step compiled in {time.perf_counter() - t0:.1f}s")

  run = _Run(cfg, trainer, ckpt, train_iter, meta, hooks, metrics_lib.MetricsWriter(cfg.run_dir))
  state, step, reason = run.steps(step_fn, start.state, start.frozen, total_steps, stop, progress)
  log(f"stopped at step {step}/{total_steps}: {reason}")
  run.final_save(step, state)
  eval_loss = None
  if reason.startswith("finished"):
    eval_loss = run.finish(step, state, start.frozen)
  run.writer.close()
  return Result(run.first_step, step, total_steps, run.losses, eval_loss, reason, ckpt.directory)


def _mesh(cfg: config_lib.Config):
  mesh_lib.maybe_initialize_distributed(cfg.mesh)
  compile_cache.enable(cfg.checkpoint.compilation_cache_dir)
  mesh = mesh_lib.make_mesh(cfg.mesh)
  mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.train.grad_accum)
  log(f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.devices()[0].platform}"
      f" devices, {jax.process_count()} process(es)")
  return mesh


def _check_vocab(cfg: config_lib.Config, manifest: dict) -> None:
  """The tokenizer's ids must index the model's embedding: a larger tokenizer would train on
  ids the model has no rows for (XLA clamps them silently)."""
  vocab = manifest.get("vocab_size")
  if vocab and vocab > cfg.model.vocab_size:
    raise config_lib.ConfigError(
        f"data.tokenizer ({manifest.get('tokenizer')}) has {vocab} pieces but"
        f" model.vocab_size={cfg.model.vocab_size}: use the model's own tokenizer")


def _write_config(cfg: config_lib.Config) -> None:
  if jax.process_index() == 0:
    storage.write_text(storage.join(cfg.run_dir, "config.yaml"), config_lib.to_yaml(cfg))


def _state_bytes(state) -> int:
  """Bytes of the whole train state (what one checkpoint step holds, before metadata)."""
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)))


class _Window:
  """Train metrics over the steps since the last log line: counters summed, the rest averaged.

  mean_turn_tokens is the difficulty of those steps' examples: their mean model-turn
  length in tokens (loss tokens per example, the curriculum_length key), so a curriculum
  shows as a rising curve.
  """

  def __init__(self):
    self.seconds, self.counts, self.values = 0.0, {}, {}

  def add(self, metrics: dict, seconds: float) -> None:
    self.seconds += seconds
    for k, v in metrics.items():
      if k in objectives.COUNTERS:
        self.counts[k] = self.counts.get(k, 0.0) + v
      else:
        self.values.setdefault(k, []).append(v)

  def tokens_per_s(self) -> float:
    return self.counts.get("tokens", 0.0) / max(self.seconds, 1e-9)

  def row(self, elapsed: float) -> dict:
    secs = max(self.seconds, 1e-9)
    row = {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan")
           for k, v in self.values.items()}
    row.update(tokens_per_s=self.tokens_per_s(),
               real_tokens_per_s=self.counts.get("real_tokens", 0.0) / secs, seconds=elapsed)
    if self.counts.get("examples"):
      row["mean_turn_tokens"] = self.counts["turn_tokens"] / self.counts["examples"]
    return row


@dataclasses.dataclass
class _Run:
  """One session's moving parts, and the named things it does between steps."""

  cfg: config_lib.Config
  trainer: builder.Trainer
  ckpt: ckpt_lib.Checkpointer
  train_iter: Any
  meta: dict
  hooks: Hooks
  writer: metrics_lib.MetricsWriter
  first_step: int = 0
  losses: list = dataclasses.field(default_factory=list)
  write_bps: Optional[float] = None  # measured once, on the first budget check

  def steps(self, step_fn, state, frozen, total_steps, stop, progress):
    """Steps until the end, a signal, the budget or the data runs out: (state, step, reason)."""
    cfg = self.cfg
    step = self.first_step = int(jax.device_get(state.step))
    log(f"steps {step} -> {total_steps} (batch {cfg.train.batch_size} x"
        f" {cfg.data.max_seq_len}, grad_accum {cfg.train.grad_accum})")
    bar = _progress_bar(progress, step, total_steps)
    window, step_s, reason = _Window(), 0.0, "finished"
    while step < total_steps:
      reason_now = stop.should_stop(step_s, self.final_save_estimate())
      if reason_now:
        reason = reason_now
        break
      host_batch = next(self.train_iter, None)
      if host_batch is None:
        reason = "finished: data exhausted"
        break
      t0 = time.perf_counter()
      state, m = step_fn(state, frozen, host_batch)  # host metrics: one sync per step
      step, step_s = step + 1, time.perf_counter() - t0
      self.losses.append(m["loss"])
      window.add(m, step_s)
      if step % cfg.train.log_every == 0 or step == total_steps or step == self.first_step + 1:
        self.writer.write(step, "train", window.row(stop.elapsed()))
        if bar is not None:
          shown = {"reward": m["reward"]} if "reward" in m else {"loss": m["loss"]}
          bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()},
                          tok_s=f"{window.tokens_per_s():.0f}")
        window = _Window()
      if bar is not None:
        bar.update(1)
      if step < total_steps:
        self.between_steps(step, state, frozen)
    if bar is not None:
      bar.close()
    return state, step, reason

  def between_steps(self, step: int, state, frozen) -> None:
    """Periodic held-out loss, the layers-above check (format compliance), checkpoints."""
    cfg = self.cfg
    if cfg.train.eval_every and step % cfg.train.eval_every == 0:
      self.evaluate(step, state, frozen)
    if self.hooks.during and self.hooks.every and step % self.hooks.every == 0:
      params, lora = self.params_and_lora(state, frozen)
      self.writer.write(step, "eval", self.hooks.during(step, params, lora))
    if self.ckpt.due(step):
      self.ckpt.save(step, state, self.train_iter, cfg, self.meta)
      self.writer.sync()

  def final_save_estimate(self) -> float:
    """Seconds the blocking final save will take: the last save's measured start-to-commit
    time, and never less than the state's size at the measured write speed plus Orbax's
    fixed cost (the estimate stands alone before the first save has committed)."""
    if self.write_bps is None:
      self.write_bps = self.ckpt.write_speed()
    per_process = self.meta["state_bytes"] / jax.process_count()
    return max(self.ckpt.last_save_s, SAVE_OVERHEAD_S + 1.25 * per_process / self.write_bps)

  def params_and_lora(self, state, frozen):
    """(model params, adapters or None) whole on every host, for the hooks.

    process_allgather, not device_get: on a multi-host slice no process holds every shard.
    """
    gather = lambda tree: multihost_utils.process_allgather(tree, tiled=True)
    if self.trainer.lora:
      return gather(frozen), gather(state.params)
    return gather(state.params), None

  def evaluate(self, step: int, state, frozen) -> Optional[float]:
    """Token-weighted held-out loss and perplexity over the first eval_batches batches."""
    cfg, mesh = self.cfg, self.trainer.mesh
    loss_sum, count = 0.0, 0.0
    rows = data_feed.eval_batch_size(cfg, mesh)
    for host_batch in data_feed.eval_batches(cfg, rows):
      s, c = jax.device_get(self.trainer.eval_step(
          state.params, frozen, data_feed.to_device(host_batch, mesh, rows)))
      loss_sum, count = loss_sum + float(s), count + float(c)
    if count == 0:
      return None
    loss = loss_sum / count
    ppl = math.exp(min(loss, 50.0))
    self.writer.write(step, "eval", {"loss": loss, "perplexity": ppl, "loss_tokens": count})
    log(f"step {step}: eval loss {loss:.4f} perplexity {ppl:.2f}")
    return loss

  def final_save(self, step: int, state) -> None:
    if self.cfg.checkpoint.save_at_end and step > self.first_step:
      t0 = time.perf_counter()
      self.ckpt.save(step, state, self.train_iter, self.cfg, self.meta)
      self.ckpt.wait()
      log(f"final checkpoint saved in {time.perf_counter() - t0:.1f}s")
    self.ckpt.close()

  def finish(self, step: int, state, frozen) -> Optional[float]:
    """A finished run: the last held-out loss, the loss plot, then the layers above."""
    eval_loss = self.evaluate(step, state, frozen)
    plot = metrics_lib.plot_losses(self.cfg.run_dir)
    if plot:
      log(f"loss curves: {plot}")
    if self.hooks.at_end:
      self.hooks.at_end(self.cfg, *self.params_and_lora(state, frozen))
    return eval_loss


def _progress_bar(enabled: bool, start: int, total: int):
  if not enabled or jax.process_index() != 0:
    return None
  return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
