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

import jax
import optax
from jax.sharding import Mesh

from jax_sft import config as config_lib
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import state as state_lib
from jax_sft.train import step as step_lib
from jax_sft.train import weights

PyTree = Any


@dataclasses.dataclass
class Start:
  """What the loop starts from."""

  state: state_lib.TrainState
  frozen: PyTree  # base weights under LoRA, {} otherwise
  state_sh: state_lib.TrainState
  frozen_sh: PyTree
  resumed_step: Optional[int]  # checkpoint step restored by --resume, else None
  note: str


def _abstract_state(trainable_abstract: PyTree, tx, seed: int) -> state_lib.TrainState:
  return jax.eval_shape(lambda p: state_lib.create(p, tx, seed), trainable_abstract)


def build(cfg: config_lib.Config, mesh: Mesh, tx: optax.GradientTransformation,
          ckpt: ckpt_lib.Checkpointer, *, resume: bool, init_from: Optional[str],
          init_optimizer: bool, data_iter=None) -> Start:
  """Creates or restores the state on `mesh`; checks compatibility before compiling."""
  lora = cfg.lora.enabled
  copts = step_lib.compiler_options(cfg.train.xla_opt_level)
  base_abstract = weights.abstract_params(cfg)
  base_sh = state_lib.param_shardings(base_abstract, mesh)
  if lora:
    adapters_abstract = jax.eval_shape(lambda: weights.init_adapters(cfg, cfg.seed))
    trainable_abstract = adapters_abstract
  else:
    trainable_abstract = base_abstract
  abstract = _abstract_state(trainable_abstract, tx, cfg.seed)
  state_sh = state_lib.state_shardings(abstract, tx, mesh)
  frozen_sh = base_sh if lora else {}

  latest = ckpt.latest_step()
  if latest is not None and not resume:
    raise ckpt_lib.CheckpointError(
        f"{ckpt.directory} already holds checkpoints (latest step {latest}): pass --resume"
        " to continue that run, or choose a new run_dir")
  if resume and latest is not None:
    ckpt.check_compatible(latest, cfg, trainable_abstract)
    _check_same_data(ckpt, latest, cfg)
    frozen = weights.load_base(cfg, shardings=base_sh) if lora else {}
    params = ckpt.restore_params(latest, trainable_abstract, state_sh.params)
    opt = ckpt.restore_opt(latest, _opt_part(abstract), _opt_part(state_sh))
    if data_iter is not None:
      ckpt.restore_data_iter(latest, data_iter)
    state = state_lib.TrainState(step=opt["step"], params=params,
                                 opt_state=opt["opt_state"], rng=opt["rng"])
    return Start(state, frozen, state_sh, frozen_sh, latest, f"resumed from step {latest}")

  note = "resume asked but no checkpoint yet: starting fresh; " if resume else ""
  if init_from:
    src, step = ckpt_lib.open_read_only(init_from)
    src.check_compatible(step, cfg, trainable_abstract)
    src_meta = src.read_json(step, "meta")
    if lora:
      frozen = weights.load_base(cfg, src_meta.get("base_weights"), shardings=base_sh)
    else:
      frozen = {}
    params = src.restore_params(step, trainable_abstract, state_sh.params)
    state = jax.jit(lambda p: state_lib.create(p, tx, cfg.seed),
                    out_shardings=state_sh, compiler_options=copts)(params)
    if init_optimizer:
      opt = src.restore_opt(step, _opt_part(abstract), _opt_part(state_sh))
      state = state.replace(opt_state=opt["opt_state"])
    note += f"warm start from {src.directory}/{step}" + (
        " with its optimizer state" if init_optimizer else "")
    return Start(state, frozen, state_sh, frozen_sh, None, note)

  base = weights.load_base(cfg, shardings=base_sh)
  if lora:
    adapters = jax.jit(lambda: weights.init_adapters(cfg, cfg.seed),
                       out_shardings=state_sh.params, compiler_options=copts)()
    frozen, trainable = base, adapters
  else:
    frozen, trainable = {}, base
  state = jax.jit(lambda p: state_lib.create(p, tx, cfg.seed), out_shardings=state_sh,
                  donate_argnums=(0,) if not lora else (), compiler_options=copts)(trainable)
  return Start(state, frozen, state_sh, frozen_sh, None,
               note + f"fresh start from {weights.base_reference(cfg)}")


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
