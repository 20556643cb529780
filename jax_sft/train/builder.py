"""The one trainer builder: from a config and a mesh, everything a train step needs.

`jax-sft train`, `jax-sft plan` and bench/bench_train.py all call `build`, so the plan
compiles exactly the step the trainer runs (same model, optimizer, shardings, dtypes,
donation), by construction:

    trainer = build(cfg, mesh, total_steps)
    compiled = trainer.train_step.lower(*trainer.abstract_args()).compile()   # plan
    state = trainer.init_state(params)                                        # train
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import optax
from jax.sharding import Mesh

from jax_sft import config as config_lib
from jax_sft.config import Objective
from jax_sft.model.gemma import Transformer
from jax_sft.train import data_feed
from jax_sft.train import grpo_step
from jax_sft.train import mesh as mesh_lib
from jax_sft.train import optimizer as opt_lib
from jax_sft.train import state as state_lib
from jax_sft.train import step as step_lib
from jax_sft.train import weights

PyTree = Any


@dataclasses.dataclass
class Trainer:
  """The model, optimizer, shardings and jitted steps of one run (nothing allocated yet)."""

  cfg: config_lib.Config
  mesh: Mesh
  model: Transformer
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  base_abstract: PyTree  # the base model's params in their storage dtype (ShapeDtypeStructs)
  base_sh: PyTree
  trainable_abstract: PyTree  # the whole model (full SFT) or the adapters (LoRA)
  abstract_state: state_lib.TrainState
  state_sh: state_lib.TrainState
  train_step: Callable  # jitted: (state, frozen, batch) -> (state, metrics); state donated
  eval_step: Callable  # jitted: (trainable, frozen, batch) -> (loss_sum, count)
  grpo: Optional[grpo_step.Pieces] = None  # GRPO's sampler and update (train.objective grpo)

  @property
  def lora(self) -> bool:
    return self.cfg.lora.enabled

  @property
  def frozen_sh(self) -> PyTree:
    """Shardings of the step's non-donated `frozen` input: the base under LoRA, else {}."""
    return self.base_sh if self.lora else {}

  def abstract_args(self) -> tuple[PyTree, PyTree, dict]:
    """(state, frozen, batch) as ShapeDtypeStructs carrying their shardings, for lowering."""
    def with_sh(abstract, shardings):
      return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
    frozen = with_sh(self.base_abstract, self.base_sh) if self.lora else {}
    return (with_sh(self.abstract_state, self.state_sh), frozen,
            data_feed.abstract_batch(self.cfg, self.mesh))

  @property
  def reference_sh(self) -> PyTree:
    """GRPO's frozen reference policy: a copy of the starting weights in full fine-tuning
    (sharded like them); under LoRA the base with the adapters off, so nothing ({})."""
    return {} if self.lora else self.base_sh

  def compile(self, compiler_options: Optional[dict] = None):
    """The train step compiled ahead of time for this mesh (no weights needed); for GRPO
    the (sampler, update) pair. `compiler_options` go to XLA (e.g. xla_dump_to)."""
    opts = dict(compiler_options=compiler_options) if compiler_options else {}
    if self.grpo is None:
      return self.train_step.lower(*self.abstract_args()).compile(**opts)
    state, frozen, _ = self.abstract_args()
    prompts, batch = grpo_step.abstract_batch(self.cfg, self.mesh)
    reference = ({} if self.lora else jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), self.base_abstract,
        self.base_sh))
    key = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, "uint32")
    sample = self.grpo.sample.lower(state.params, frozen, prompts["tokens"], prompts["positions"],
                                    prompts["segments"], key).compile(**opts)
    update = self.grpo.update.lower(state, frozen, reference, batch).compile(**opts)
    return sample, update

  def init_state(self, trainable: PyTree, donate: bool = False) -> state_lib.TrainState:
    """A step-0 state over `trainable`, created in place on its shardings."""
    return jax.jit(lambda p: state_lib.create(p, self.tx, self.cfg.seed),
                   out_shardings=self.state_sh, donate_argnums=(0,) if donate else (),
                   compiler_options=step_lib.compiler_options(self.cfg.train.xla_opt_level)
                   )(trainable)

  def new_adapters(self) -> PyTree:
    """Fresh LoRA adapters, created in place on their shardings."""
    return jax.jit(lambda: weights.init_adapters(self.cfg, self.cfg.seed),
                   out_shardings=self.state_sh.params,
                   compiler_options=step_lib.compiler_options(self.cfg.train.xla_opt_level))()


def build(cfg: config_lib.Config, mesh: Mesh, total_steps: int) -> Trainer:
  """The trainer for `cfg` on `mesh`, with a schedule over `total_steps`."""
  lora = cfg.lora.enabled
  tx = opt_lib.make_optimizer(cfg.train, total_steps)
  schedule = opt_lib.make_schedule(cfg.train, total_steps)
  base_abstract = weights.abstract_base(cfg)
  base_sh = state_lib.param_shardings(base_abstract, mesh, cfg.model)
  trainable_abstract = weights.abstract_adapters(cfg) if lora else base_abstract
  abstract_state = jax.eval_shape(lambda p: state_lib.create(p, tx, cfg.seed), trainable_abstract)
  state_sh = state_lib.state_shardings(abstract_state, tx, mesh, cfg.model)
  frozen_sh = base_sh if lora else {}

  model = Transformer(cfg.model, cfg.lora if lora else None)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, cfg.model, tx, schedule, lora=lora,
                               grad_accum=cfg.train.grad_accum,
                               stochastic_rounding=cfg.train.stochastic_rounding,
                               ways=mesh_lib.batch_parallelism(mesh)),
      mesh, state_sh, frozen_sh, cfg.train.xla_opt_level)
  eval_step = step_lib.make_eval_step(model, cfg.model, mesh, state_sh.params, frozen_sh,
                                      lora=lora, xla_opt_level=cfg.train.xla_opt_level)
  trainer = Trainer(cfg, mesh, model, tx, schedule, base_abstract, base_sh, trainable_abstract,
                    abstract_state, state_sh, train_step, eval_step)
  if cfg.train.objective == Objective.grpo:  # the same state and shardings, another step
    trainer.grpo = grpo_step.jit_pieces(cfg, mesh, tx, schedule, state_sh, frozen_sh,
                                        trainer.reference_sh)
    trainer.train_step = trainer.grpo.update
  return trainer
