"""Will this config fit a TPU slice, and how fast will it go? Answered ahead of time, on a CPU.

The trainer's own jitted train step (train.builder, the same call `jax-sft train` makes) is
lowered with abstract inputs (ShapeDtypeStructs
carrying their shardings: no weights are allocated) over libtpu's virtual devices for the
slice and compiled by the TPU compiler. XLA's memory_analysis gives the bytes per device,
its cost_analysis the FLOPs and the roofline time of one step; the epoch size comes from
the prepared data (or an estimate), so the plan can say how many epochs fit the budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Optional

import jax
from jax.sharding import Mesh

from jax_sft import config as config_lib
from jax_sft.model import attention as attention_lib
from jax_sft.tpu import memory
from jax_sft.tpu import topologies
from jax_sft.tpu import workload
from jax_sft.train import builder
from jax_sft.train import mesh as mesh_lib
from jax_sft.train.stopping import parse_duration

GiB = 2**30
KAGGLE_OUTPUT_BYTES = 20 * 10**9  # what a Kaggle session saves
DEFAULT_BUDGET = "8h30m"  # a Kaggle session less install and export
_OOM = re.compile(r"RESOURCE_EXHAUSTED|[Rr]an out of memory|exceeds? .*memory", re.S)


@dataclasses.dataclass
class Plan:
  """What one compile for one slice says, per device (a chip, or a core on v2-v4)."""

  topology: str
  device_kind: str
  num_devices: int
  mesh: dict
  batch_size: int  # global
  seq_len: int
  mode: str  # "full" or "lora"
  fits: bool
  hbm_bytes: int  # per device
  argument_bytes: int = 0
  output_bytes: int = 0
  alias_bytes: int = 0
  temp_bytes: int = 0
  code_bytes: int = 0
  total_bytes: int = 0  # argument + output - alias + temp + code
  flops: float = 0.0  # per device per step, XLA's count (remat recomputation included)
  optimal_seconds: float = 0.0  # XLA's roofline estimate of one step
  tokens_per_s: float = 0.0  # global tokens / optimal_seconds: an upper bound
  roofline: str = ""  # "xla" (cost_analysis optimal_seconds) or "flops/peak"
  epoch: Optional[dict] = None
  hours_per_epoch: float = 0.0  # at the roofline
  budget_hours: float = 0.0
  epochs_in_budget: float = 0.0
  compile_s: float = 0.0
  error: str = ""  # the compiler's message when it refused (out of HBM)
  checkpoint_bytes: int = 0  # one checkpoint step: the whole train state (weights, optimizer)
  attention: str = ""  # the attention core compiled: "splash" or "xla"
  memory_kinds: Optional[dict] = None  # bytes live at the peak per kind (tpu/memory.py)
  objective: str = "sft"  # "grpo": the totals are the larger of its two programs
  grpo_sample_bytes: int = 0  # GRPO's sampler (KV cache, prompts, completions)
  grpo_update_bytes: int = 0  # GRPO's update (policy and reference log-probs, gradients)

  @property
  def verdict(self) -> str:
    """A plain sentence: fits or not, and by how much."""
    used = self.total_bytes / GiB
    cap = self.hbm_bytes / GiB
    if self.fits:
      return f"FITS: {used:.2f} of {cap:.1f} GiB per device ({cap - used:.2f} GiB free)"
    if self.total_bytes:
      return f"DOES NOT FIT: {used:.2f} GiB per device > {cap:.1f} GiB"
    return f"DOES NOT FIT: the TPU compiler ran out of {cap:.1f} GiB HBM ({self.error})"


def make_mesh(cfg: config_lib.Config, topology: topologies.Topology) -> Mesh:
  """The trainer's mesh from cfg.mesh over the slice's virtual devices; checks the batch."""
  mesh = mesh_lib.make_mesh(cfg.mesh, topologies.devices(topology))
  mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.train.grad_accum)
  return mesh


def _cost(compiled) -> dict[str, Any]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return dict(cost or {})


def compiled_attention(cfg: config_lib.Config) -> str:
  """The attention core a TPU compile of `cfg` runs: 'splash' or 'xla' (attention.use_splash)."""
  if cfg.model.attention == "xla":
    return "xla"
  return "splash" if attention_lib.block_size(cfg.data.max_seq_len) else "xla"


def plan(cfg: config_lib.Config, topology: topologies.Topology, *,
         hbm_gib: Optional[float] = None, time_budget: Optional[str] = None,
         memory_dir: Optional[str] = None) -> Plan:
  """Compiles cfg's train step for `topology` and reports memory, speed and epochs.

  `hbm_gib` overrides the HBM per device the verdict compares against. `memory_dir`: the
  compiler dumps its buffer assignment there and the plan carries the bytes live at the
  peak per kind of buffer (tpu/memory.py).
  """
  mesh = make_mesh(cfg, topology)
  devices = list(mesh.devices.flat)
  per_device = topology.num_chips / len(devices)  # v2-v4 compile one device per core
  hbm = int(hbm_gib * GiB) if hbm_gib else int(topology.hbm_bytes_per_chip * per_device)
  seq = cfg.data.max_seq_len
  result = Plan(topology=topology.name, device_kind=devices[0].device_kind,
                num_devices=len(devices), mesh=dict(mesh.shape),
                batch_size=cfg.train.batch_size, seq_len=seq,
                mode="lora" if cfg.lora.enabled else "full", fits=False, hbm_bytes=hbm,
                attention=compiled_attention(cfg))
  t0 = time.time()
  trainer = builder.build(cfg, mesh, total_steps=1000)  # only the schedule's constants use it
  result.checkpoint_bytes = int(sum(x.size * x.dtype.itemsize
                                    for x in jax.tree.leaves(trainer.abstract_state)))
  try:
    if memory_dir:  # a persistent-cache hit would compile nothing, so dump nothing
      cached = jax.config.jax_enable_compilation_cache
      jax.config.update("jax_enable_compilation_cache", False)
      try:
        compiled = trainer.compile({"xla_dump_to": memory_dir})
      finally:
        jax.config.update("jax_enable_compilation_cache", cached)
    else:
      compiled = trainer.compile()
  except Exception as e:  # pylint: disable=broad-except
    if not _OOM.search(str(e)):
      raise
    result.compile_s = time.time() - t0
    result.error = _short_oom(str(e))
    return result
  result.compile_s = time.time() - t0

  grpo = isinstance(compiled, tuple)
  if grpo:  # GRPO: the sampler and the update are two programs; the larger sets the peak
    g = cfg.grpo
    result.objective = "grpo"  # its rows: prompts x generations of prompt + completion
    result.batch_size = g.prompts_per_step * g.num_generations
    result.seq_len = g.max_prompt_tokens + g.max_new_tokens - 1
    result.attention = ("splash" if cfg.model.attention != "xla"
                        and attention_lib.block_size(result.seq_len) else "xla")
    sample, update = compiled
    result.grpo_sample_bytes, result.grpo_update_bytes = _total(sample), _total(update)
    compiled = sample if result.grpo_sample_bytes > result.grpo_update_bytes else update
  mem = compiled.memory_analysis()
  result.argument_bytes = mem.argument_size_in_bytes
  result.output_bytes = mem.output_size_in_bytes
  result.alias_bytes = mem.alias_size_in_bytes
  result.temp_bytes = mem.temp_size_in_bytes
  result.code_bytes = mem.generated_code_size_in_bytes
  result.total_bytes = _total(compiled)
  result.fits = result.total_bytes <= hbm
  if memory_dir and not grpo:  # (two programs' dumps in one dir would mix)
    report = memory.account(memory_dir)
    result.memory_kinds = {k: v["bytes"] for k, v in report["kinds"].items() if v["count"]}

  if grpo:  # one GRPO step: a sampling pass, then num_iterations updates
    g = cfg.grpo
    cost = {"flops": _cost(sample).get("flops", 0.0)
            + g.num_iterations * _cost(update).get("flops", 0.0)}
  else:
    cost = _cost(compiled)
  result.flops = float(cost.get("flops", 0.0))
  peak = topology.peak_flops_per_chip * per_device
  # XLA's roofline; libtpu 0.0.42 returns a negative value for big programs, so fall back
  # to the FLOP-bound time at the chip's peak (also an upper bound on speed).
  result.optimal_seconds = float(cost.get("optimal_seconds", 0.0))
  result.roofline = "xla"
  if result.optimal_seconds <= 0:
    result.optimal_seconds, result.roofline = result.flops / peak, "flops/peak"
  tokens_per_step = cfg.train.batch_size * seq
  if grpo:  # sampled tokens (prompt + completion) per GRPO step; an epoch is of prompts
    g = cfg.grpo
    tokens_per_step = g.prompts_per_step * g.num_generations * (g.max_prompt_tokens
                                                                + g.max_new_tokens)
  if result.optimal_seconds > 0:
    result.tokens_per_s = tokens_per_step / result.optimal_seconds

  ep = workload.epoch(cfg.data)
  result.epoch = dataclasses.asdict(ep)
  budget = time_budget or cfg.train.time_budget or DEFAULT_BUDGET
  result.budget_hours = parse_duration(budget) / 3600
  if ep.rows and result.optimal_seconds > 0:
    steps = math.ceil(ep.rows / (cfg.grpo.prompts_per_step if grpo else cfg.train.batch_size))
    result.hours_per_epoch = steps * result.optimal_seconds / 3600
    result.epochs_in_budget = result.budget_hours / result.hours_per_epoch
  return result


def _total(compiled) -> int:
  """Bytes one compiled program holds per device: arguments, outputs (less what they
  alias), temporaries and code."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes + m.generated_code_size_in_bytes)


def _short_oom(message: str) -> str:
  """The line of the compiler's out-of-memory message that says how much was needed."""
  for line in message.splitlines():
    if "memory" in line.lower() and any(c.isdigit() for c in line):
      return line.strip()[:300]
  return message.strip().splitlines()[0][:300]


def _predict(tried: dict[int, Plan], hbm: int) -> Optional[int]:
  """The per-device batch a line through the two largest compiled batches puts at the HBM."""
  known = sorted(b for b, p in tried.items() if p.total_bytes)
  if len(known) < 2:
    return None
  b1, b2 = known[-2:]
  t1, t2 = tried[b1].total_bytes, tried[b2].total_bytes
  if t2 <= t1:
    return None
  return b1 + int((hbm - t1) * (b2 - b1) // (t2 - t1))


def find_batch(cfg: config_lib.Config, topology: topologies.Topology, *,
               hbm_gib: Optional[float] = None, max_per_device: int = 64,
               time_budget: Optional[str] = None, log=print,
               memory_dir: Optional[str] = None) -> tuple[Optional[Plan], list[Plan]]:
  """The largest per-device batch that fits, in few compiles (each takes minutes).

  Starts at the config's batch and doubles it; then memory, nearly linear in the batch,
  is extrapolated to the HBM through the two largest compiled batches, and the guess is
  checked against its neighbour. A guess that misses is followed by a bisection step, so
  the search ends even where memory is not linear (a compiler that runs out of HBM reports
  no total). Returns (best fitting plan or None, every plan tried). grad_accum is kept;
  the global batch is per-device rows x data-parallel devices x grad_accum.
  """
  ways = mesh_lib.batch_parallelism(mesh_lib.make_mesh(cfg.mesh, topologies.devices(topology)))
  per_device_chips = topology.num_chips / len(topologies.devices(topology))
  hbm = int(hbm_gib * GiB) if hbm_gib else int(topology.hbm_bytes_per_chip * per_device_chips)
  tried: dict[int, Plan] = {}

  def attempt(per_device: int) -> bool:
    c = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, batch_size=per_device * ways * cfg.train.grad_accum))
    dump = f"{memory_dir}/per_device_{per_device}" if memory_dir else None
    p = plan(c, topology, hbm_gib=hbm_gib, time_budget=time_budget, memory_dir=dump)
    tried[per_device] = p
    log(f"  per-device batch {per_device:3d}: {p.verdict}")
    return p.fits

  lo, hi = 0, max_per_device + 1  # lo fits (0 = nothing yet), hi does not
  b = min(max(cfg.train.batch_size // (ways * cfg.train.grad_accum), 1), max_per_device)
  predicted = False
  while True:
    fits = attempt(b)
    lo, hi = (b, hi) if fits else (lo, b)
    if hi - lo <= 1:
      break
    bisect = (lo + hi) // 2
    guess = _predict(tried, hbm)
    if fits and len(tried) == 1:
      b, predicted = 2 * b, False  # a second point for the line
    elif guess is not None and not (predicted and not fits) and guess < hi:
      b, predicted = max(guess, lo + 1), True  # at or below lo: check the neighbour
    else:
      b, predicted = bisect, False
    if b in tried or not lo < b < hi:
      b, predicted = bisect, False
    b = min(b, max_per_device)
  plans = [tried[k] for k in sorted(tried)]
  return (tried[lo] if lo else None), plans

