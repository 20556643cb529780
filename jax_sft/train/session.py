"""How a session starts: fresh, resumed from its own checkpoint, or warm-started.

- fresh: base weights from `model.init_from` (or seeded random), new adapters under LoRA.
- resume (`--resume [--resume-step N]`): the run's newest readable checkpoint (or step N):
  weights, optimizer, step, RNG and the data iterator, so the run continues exactly where
  it stopped. A checkpoint of another data stream (mix, seed, shuffle, packing) is refused.
- init-from (`--init-from CKPT`): another run's weights (a read-only dir is fine), a new
  schedule and data from step 0; with `init_optimizer` also its optimizer moments. CKPT may
  also be an export or released weights (Kaggle Flax, safetensors, Keras, GGUF): weights
  only, with a fresh optimizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from jax_sft.config import Objective
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import compat
from jax_sft.train import state as state_lib
from jax_sft.train import weights
from jax_sft.train.builder import Trainer

PyTree = Any


@dataclasses.dataclass
class Start:
  """What the loop starts from."""

  state: state_lib.TrainState
  frozen: PyTree  # base weights under LoRA, {} otherwise
  resumed_step: Optional[int]  # checkpoint step restored by --resume, else None
  note: str
  base_weights: Optional[str] = None  # under LoRA: where the frozen base came from, if not
                                      # model.init_from (a warm start's); saved in meta


def build(trainer: Trainer, ckpt: ckpt_lib.Checkpointer, *, resume: bool,
          init_from: Optional[str], init_optimizer: bool, data_iter=None,
          stream: Optional[dict] = None, resume_step: Optional[int] = None) -> Start:
  """Creates or restores the state on the trainer's mesh; checks compatibility first.

  `stream` is this run's data-stream identity (compat.stream_identity), checked on resume.
  """
  cfg, lora = trainer.cfg, trainer.lora
  latest = ckpt.latest_step()
  if latest is not None and not resume:
    raise ckpt_lib.CheckpointError(
        f"{ckpt.directory} already holds checkpoints (latest step {latest}): pass --resume"
        " to continue that run, or choose a new run_dir")
  if resume and latest is not None:
    return _resume(trainer, ckpt, data_iter, stream, resume_step)
  if resume_step is not None:
    raise ckpt_lib.CheckpointError(f"--resume-step {resume_step}: {ckpt.directory} holds no"
                                   " checkpoint")
  note = "resume asked but no checkpoint yet: starting fresh; " if resume else ""
  if init_from:
    return _warm_start(trainer, init_from, init_optimizer, note)
  base = weights.load_base(cfg, shardings=trainer.base_sh)
  if lora:
    state = trainer.init_state(trainer.new_adapters())
    frozen = base
  else:
    state, frozen = trainer.init_state(base, donate=True), {}
  return Start(state, frozen, None, note + f"fresh start from {weights.base_reference(cfg)}")


def _resume(trainer: Trainer, ckpt: ckpt_lib.Checkpointer, data_iter, stream: Optional[dict],
            resume_step: Optional[int]) -> Start:
  cfg = trainer.cfg

  def restore(step: int) -> tuple[state_lib.TrainState, Optional[str]]:
    ckpt.check_compatible(step, cfg, trainer.trainable_abstract)
    meta = ckpt.read_json(step, "meta")
    if stream is not None:
      differ = compat.stream_diff(meta, ckpt.read_json(step, "config"), stream)
      if differ:
        raise ckpt_lib.CheckpointError(
            f"--resume of {ckpt.directory}/{step} would continue another data stream (use"
            " --init-from to start a new run from its weights):\n  " + "\n  ".join(differ))
    params = ckpt.restore_params(step, trainer.trainable_abstract, trainer.state_sh.params)
    opt = ckpt.restore_opt(step, _opt_part(trainer.abstract_state), _opt_part(trainer.state_sh))
    if data_iter is not None:
      ckpt.restore_data_iter(step, data_iter)
    return state_lib.TrainState(step=opt["step"], params=params, opt_state=opt["opt_state"],
                                rng=opt["rng"]), meta.get("base_weights")

  step, (state, base_ref) = ckpt.restore_newest_good(restore, resume_step)
  frozen = weights.load_base(cfg, base_ref, shardings=trainer.base_sh) if trainer.lora else {}
  return Start(state, frozen, step, f"resumed from step {step}", base_weights=base_ref)


def _warm_start(trainer: Trainer, init_from: str, init_optimizer: bool, note: str) -> Start:
  cfg = trainer.cfg
  if not ckpt_lib.is_run(init_from):
    return _warm_start_from_weights(trainer, init_from, init_optimizer, note)
  if trainer.lora and cfg.train.objective == Objective.grpo:
    # GRPO's reference policy under LoRA is the frozen base with the adapters off, and it
    # must be the model GRPO starts from (the SFT run), not the pretrained base the SFT
    # adapters sit on: the run's adapters are merged into the base and GRPO trains new ones
    # (its meta then names the run as the base, which a resume or an export merges again).
    return _warm_start_from_weights(trainer, init_from, init_optimizer, note)
  src, step = ckpt_lib.open_read_only(init_from)
  src.check_compatible(step, cfg, trainer.trainable_abstract)
  src_meta = src.read_json(step, "meta")
  frozen = (weights.load_base(cfg, src_meta.get("base_weights"), shardings=trainer.base_sh)
            if trainer.lora else {})
  params = src.restore_params(step, trainer.trainable_abstract, trainer.state_sh.params)
  state = trainer.init_state(params)
  if init_optimizer:
    opt = src.restore_opt(step, _opt_part(trainer.abstract_state), _opt_part(trainer.state_sh))
    state = state.replace(opt_state=opt["opt_state"])
  note += f"warm start from {src.directory}/{step}" + (
      " with its optimizer state" if init_optimizer else "")
  # Under LoRA the frozen base the adapters sit on; in full fine-tuning the run the weights
  # came from (GRPO's frozen reference policy).
  source = src_meta.get("base_weights") if trainer.lora else str(init_from)
  return Start(state, frozen, None, note, base_weights=source)


def _warm_start_from_weights(trainer: Trainer, path: str, init_optimizer: bool,
                             note: str) -> Start:
  """An export or released weights: the model only (LoRA: new adapters on top of it)."""
  if init_optimizer:
    raise ckpt_lib.CheckpointError(
        f"--init-optimizer: {path} holds no optimizer state to carry over (an export or"
        " released weights, or, for GRPO under LoRA, a run whose adapters are merged into"
        " the base under new ones); drop --init-optimizer")
  params = weights.load_base(trainer.cfg, path, shardings=trainer.base_sh)
  if trainer.lora:
    state, frozen = trainer.init_state(trainer.new_adapters()), params
  else:
    state, frozen = trainer.init_state(params, donate=True), {}
  note += (f"warm start from {path}: its weights only" + (
      ", LoRA merged, under new adapters" if trainer.lora and ckpt_lib.is_run(path) else "")
      + ", with a fresh optimizer")
  return Start(state, frozen, None, note, base_weights=path)


def _opt_part(s: state_lib.TrainState) -> dict:
  return {"step": s.step, "opt_state": s.opt_state, "rng": s.rng}
