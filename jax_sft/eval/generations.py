"""What evaluation does inside a training run: the trainer's hooks (train.loop.Hooks).

- every eval.during_training_every steps: format compliance of a few held-out prompts;
- at the end of a finished run: greedy generations of a few held-out questions, printed,
  and with eval.at_end the full `jax-sft eval` report of the run's last checkpoint.
"""

from __future__ import annotations

import os

import jax

from jax_sft import config as config_lib
from jax_sft.data import encode, prepare
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.eval import evaluate
from jax_sft.model import sampler
from jax_sft.train.loop import Hooks


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[train] {msg}", flush=True)


def _records(cfg: config_lib.Config, n: int) -> list[dict]:
  try:
    return prepare.read_records(cfg.data.output_dir, "eval")[:n]
  except FileNotFoundError:
    return prepare.read_records(cfg.data.output_dir, "train")[:n]


def print_generations(cfg: config_lib.Config, params, lora) -> list[str]:
  """Greedy completions of the first train.generations_at_end eval questions (printed)."""
  records = _records(cfg, cfg.train.generations_at_end)
  tok = Tokenizer(cfg.data.tokenizer)
  ids = [encode.prompt_ids(tok, r["question"], cfg.data.system_prompt) for r in records]
  new = sampler.generate(params, cfg.model, ids, lora=lora,
                         lora_config=cfg.lora if lora is not None else None,
                         max_new_tokens=cfg.train.generation_max_new_tokens,
                         stop_ids=(tok.end_of_turn_id, tok.eos_id), pad_id=tok.pad_id)
  outs = [tok.decode(n) for n in new]
  if jax.process_index() == 0:
    for r, out in zip(records, outs):
      print(f"[train] --- {r['id']}\n  Q: {r['question'][:200]}\n  A: {out[:400]}", flush=True)
  return outs


def compliance_during_training(cfg: config_lib.Config):
  """The short check: {'compliance': share of a few held-out prompts answered in the format}."""
  tok = Tokenizer(cfg.data.tokenizer)

  def check(step: int, params, lora) -> dict:
    try:
      records = prepare.read_records(cfg.data.output_dir, "eval")
    except FileNotFoundError:
      return {}
    questions = [r["question"] for r in records[:cfg.eval.during_training_prompts]]
    rate = evaluate.quick_compliance(params, lora, cfg, tok, questions)
    log(f"step {step}: format compliance {rate:.0%} of {len(questions)} held-out prompts")
    return {"compliance": rate}
  return check


def at_end(cfg: config_lib.Config, params, lora) -> None:
  """Generations, then (eval.at_end) `jax-sft eval` of the run's last checkpoint."""
  if cfg.train.generations_at_end > 0:
    print_generations(cfg, params, lora)
  if not cfg.eval.at_end:
    return
  report = evaluate.evaluate(cfg, cfg.run_dir, log=log)
  log(f"eval report: {os.path.join(cfg.run_dir, 'eval', 'report.md')}"
      f" (format compliance {report['summary']['compliance_rate'] or 0.0:.0%})")


def training_hooks(cfg: config_lib.Config) -> Hooks:
  """The hooks `jax-sft train` runs the trainer with."""
  every = cfg.eval.during_training_every
  return Hooks(every=every, during=compliance_during_training(cfg) if every else None,
               at_end=at_end)
