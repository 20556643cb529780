"""How a session starts: fresh, resumed from its own checkpoint, or warm-started.

- fresh: base weights from `model.init_from` (or seeded random), new adapters under LoRA.
- resume (`--resume`): the run's latest checkpoint: weights, optimizer, step, RNG and
  the data iterator, so the run continues exactly where it stopped.
- init-from (`--init-from CKPT`): another run's weights (a read-only dir is fine), a new
  schedule and data from step 0; with `init_optimizer` also its optimizer moments.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from jax_sft import config as config_lib
from jax_sft.train import checkpoint as ckpt_lib
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


def build(trainer: Trainer, ckpt: ckpt_lib.Checkpointer, *, resume: bool,
          init_from: Optional[str], init_optimizer: bool, data_iter=None) -> Start:
  """Creates or restores the state on the trainer's mesh; checks compatibility first."""
  cfg, lora = trainer.cfg, trainer.lora
  latest = ckpt.latest_step()
  if latest is not None and not resume:
    raise ckpt_lib.CheckpointError(
        f"{ckpt.directory} already holds checkpoints (latest step {latest}): pass --resume"
        " to continue that run, or choose a new run_dir")
  if resume and latest is not None:
    return _resume(trainer, ckpt, latest, data_iter)
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


def _resume(trainer: Trainer, ckpt: ckpt_lib.Checkpointer, step: int, data_iter) -> Start:
  cfg = trainer.cfg
  ckpt.check_compatible(step, cfg, trainer.trainable_abstract)
  _check_same_data(ckpt, step, cfg)
  frozen = weights.load_base(cfg, shardings=trainer.base_sh) if trainer.lora else {}
  params = ckpt.restore_params(step, trainer.trainable_abstract, trainer.state_sh.params)
  opt = ckpt.restore_opt(step, _opt_part(trainer.abstract_state), _opt_part(trainer.state_sh))
  if data_iter is not None:
    ckpt.restore_data_iter(step, data_iter)
  state = state_lib.TrainState(step=opt["step"], params=params, opt_state=opt["opt_state"],
                               rng=opt["rng"])
  return Start(state, frozen, step, f"resumed from step {step}")


def _warm_start(trainer: Trainer, init_from: str, init_optimizer: bool, note: str) -> Start:
  cfg = trainer.cfg
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
  return Start(state, frozen, None, note)


def _opt_part(s: state_lib.TrainState) -> dict:
  return {"step": s.step, "opt_state": s.opt_state, "rng": s.rng}


def _check_same_data(ckpt: ckpt_lib.Checkpointer, step: int, cfg: config_lib.Config):
  """A resumed run must read the same prepared data, or the iterator state is meaningless."""
  saved = ckpt.read_json(step, "config")
  lines = []
  for key in ("batch_size", "grad_accum"):
    a, b = saved["train"].get(key), getattr(cfg.train, key)
    if a != b:
      lines.append(f"train.{key}: checkpoint has {a!r}, this run has {b!r}")
  if saved["data"].get("max_seq_len") != cfg.data.max_seq_len:
    lines.append(f"data.max_seq_len: checkpoint has {saved['data'].get('max_seq_len')!r},"
                 f" this run has {cfg.data.max_seq_len!r}")
  if lines:
    raise ckpt_lib.CheckpointError(
        f"--resume of {ckpt.directory}/{step} with a different data stream (use --init-from"
        " to start a new run from its weights):\n  " + "\n  ".join(lines))
