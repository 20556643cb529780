"""Generation-based evaluation of one checkpoint: generate, check, measure, report.

    report = evaluate(cfg, "runs/smoke")            # writes runs/smoke/eval/report.{json,md}

The held-out prompts are the first `eval.num_prompts` records of the prepared 'eval'
split (split by id hash in `jax-sft prepare`, so they stay the same as the mix grows).
Decoding is greedy by default; the model sees exactly the training prompt (BOS + the
chat template's user turn and model header).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from jax_sft import config as config_lib
from jax_sft import storage
from jax_sft.data.prepare import read_records
from jax_sft.data import encode
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.eval import compliance, metrics, report as report_lib
from jax_sft.model import sampler
from jax_sft.model.gemma import Transformer
from jax_sft.train import checkpoint as ckpt_lib
from jax_sft.train import data_feed, weights
from jax_sft.train.step import loss_terms

PyTree = Any


class EvalError(ValueError):
  """An evaluation that cannot run: the message names the path or setting."""

# prompt token ids (each starting with BOS) -> generated ids per prompt, as sampled
GenerateFn = Callable[[Sequence[Sequence[int]]], Sequence[Sequence[int]]]


# --- pure pieces --------------------------------------------------------------------------


def split_generation(ids: Sequence[int], stop_ids: Sequence[int],
                     max_new_tokens: int) -> tuple[list[int], bool]:
  """(tokens before the first stop id, whether the budget ran out before any stop).

  >>> split_generation([5, 6, 1, 0, 0], stop_ids=[1], max_new_tokens=5)
  ([5, 6], False)
  >>> split_generation([5, 6, 7], stop_ids=[1], max_new_tokens=3)
  ([5, 6, 7], True)
  """
  ids = [int(i) for i in ids]
  stops = set(int(s) for s in stop_ids)
  for i, t in enumerate(ids):
    if t in stops:
      return ids[:i], False
  return ids, len(ids) >= max_new_tokens


def score_sample(record: dict, output: str, generated_tokens: int, hit_budget: bool,
                 count_tokens: Callable[[str], int]) -> dict:
  """One prompt's row of the report: the record, the output, its verdict and lengths."""
  verdict = compliance.check(output, hit_budget=hit_budget)
  return {
      "id": str(record.get("id", "")),
      "source": str(record.get("source", "unknown")),
      "question": record["question"],
      "reference_reasoning": record.get("reasoning", ""),
      "reference_answer": record.get("answer", ""),
      "output": compliance.visible_text(output),
      "ok": verdict.ok,
      "kind": verdict.kind,
      "detail": verdict.detail,
      "hit_budget": hit_budget,
      "generated_tokens": generated_tokens,
      "reasoning_tokens": None if verdict.reasoning is None else count_tokens(verdict.reasoning),
      "answer_tokens": None if verdict.answer is None else count_tokens(verdict.answer),
      "answer": verdict.answer,
      "repetition": metrics.repetition_score(verdict.reasoning or output),
  }


def prompt_ids(tokenizer, question: str, system_prompt: str = "") -> list[int]:
  """BOS + the chat template's user turn (with the data's system prompt, if any) and model
  header, as the trainer saw it."""
  return encode.prompt_ids(tokenizer, question, system_prompt)  # the question as data text


# --- the model side -----------------------------------------------------------------------


def make_generate_fn(model_cfg, lora_cfg, params: PyTree, lora: Optional[PyTree], tokenizer,
                     *, max_new_tokens: int, batch_size: int, temperature: float = 0.0,
                     top_k: int = 1, seed: int = 0) -> GenerateFn:
  """Batched generation with the project's KV-cache sampler (jax_sft.model.sampler).

  The last batch is padded with copies of its last prompt, so every call has the same
  batch size and the jitted sampler compiles once.
  """

  stop_ids = [tokenizer.end_of_turn_id, tokenizer.eos_id]

  def generate(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
      chunk = [list(p) for p in prompts[start:start + batch_size]]
      real = len(chunk)
      chunk += [chunk[-1]] * (batch_size - real)
      tokens = sampler.generate(
          params, model_cfg, chunk, lora=lora, lora_config=lora_cfg,
          max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
          stop_ids=stop_ids, pad_id=tokenizer.pad_id, seed=seed + start)
      out.extend([list(map(int, t)) for t in tokens[:real]])
    return out

  return generate


def heldout_loss(cfg: config_lib.Config, model_cfg, lora_cfg, params: PyTree,
                 lora: Optional[PyTree], max_batches: int) -> tuple[Optional[float], int]:
  """(mean token cross-entropy, token count) over the first `max_batches` packed eval
  batches: the trainer's own batches (train.data_feed.eval_batches) and loss
  (train.step.loss_terms), so the figure matches the training log's eval loss."""

  model = Transformer(model_cfg, lora_cfg if lora is not None else None)
  step = jax.jit(lambda p, l, b: loss_terms(model, model_cfg, p, l, b))
  feed_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train,
                                                                eval_batches=max_batches))
  loss_sum, count = 0.0, 0
  for batch in data_feed.eval_batches(feed_cfg):
    s, c = step(params, lora, batch)
    loss_sum += float(s)
    count += int(c)
  return (loss_sum / count if count else None), count


def load_model(cfg: config_lib.Config, checkpoint: str):
  """(model cfg, lora cfg, params, lora params or None, step or None) from a training run or
  checkpoint dir, or from released weights in any format jax_sft.model.formats reads (shaped
  by `cfg.model`, no adapters). Raises EvalError naming the path when neither fits."""
  try:
    if not ckpt_lib.is_run(checkpoint):
      return cfg.model, cfg.lora, weights.load(checkpoint, cfg.model), None, None
    run_cfg, params, lora = weights.load_for_inference(checkpoint)
    _, step = ckpt_lib.resolve(checkpoint)
  except (ValueError, FileNotFoundError) as e:  # CheckpointError is a ValueError
    raise EvalError(f"cannot load --checkpoint {checkpoint}: {e}") from e
  return run_cfg.model, run_cfg.lora, params, lora, step


# --- the whole evaluation -------------------------------------------------------------------


def run_prompts(records: Sequence[dict], tokenizer, generate_fn: GenerateFn,
                max_new_tokens: int, system_prompt: str = "") -> list[dict]:
  """Generates for every record's question and scores each output."""
  prompts = [prompt_ids(tokenizer, r["question"], system_prompt) for r in records]
  generations = generate_fn(prompts)
  stop_ids = [tokenizer.end_of_turn_id, tokenizer.eos_id]
  count = lambda text: len(tokenizer.encode(text))
  samples = []
  for record, gen in zip(records, generations):
    ids, hit = split_generation(gen, stop_ids, max_new_tokens)
    samples.append(score_sample(record, tokenizer.decode(ids), len(ids), hit, count))
  return samples


def build_report(checkpoint: str, samples: list[dict], *, max_new_tokens: int,
                 short_answer_max_words: int, loss: Optional[float] = None,
                 loss_tokens: Optional[int] = None) -> dict:
  """The report dict that report.write renders."""
  return {
      "checkpoint": checkpoint,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "max_new_tokens": max_new_tokens,
      "num_prompts": len(samples),
      "summary": metrics.summarize(samples, short_answer_max_words=short_answer_max_words,
                                   heldout_loss=loss, heldout_tokens=loss_tokens),
      "samples": samples,
  }


def evaluate(cfg: config_lib.Config, checkpoint: str, *, out_dir: Optional[str] = None,
             against: Optional[str] = None, generate_fn: Optional[GenerateFn] = None,
             log: Callable[[str], None] = print) -> dict:
  """Evaluates `checkpoint` on cfg's held-out prompts, writes report.json/report.md to
  `out_dir` (default: <run_dir>/eval) and returns the report dict.

  `against`: another checkpoint (evaluated the same way) or an earlier report.json / its
  folder, shown side by side. `generate_fn` replaces the sampler for both (tests).
  """

  e = cfg.eval
  cfg, _ = data_feed.localize(cfg)  # a prepared dir in a bucket is read from a local mirror
  try:
    records = read_records(cfg.data.output_dir, "eval")[:e.num_prompts]
  except FileNotFoundError as err:
    raise EvalError(f"{cfg.data.output_dir}: no prepared 'eval' split ({err.filename});"
                    " run `jax-sft prepare CONFIG` first") from err
  if not records:
    raise EvalError(f"{cfg.data.output_dir}: the prepared 'eval' split is empty;"
                     " run `jax-sft prepare` with a held-out share")
  tokenizer = Tokenizer(cfg.data.tokenizer)
  out_dir = out_dir or storage.join(cfg.run_dir, "eval")

  def one(path: str, gen: Optional[GenerateFn]) -> dict:
    log(f"eval: loading {path}")
    model_cfg, lora_cfg, params, lora, step = load_model(cfg, path)
    gen = gen or make_generate_fn(model_cfg, lora_cfg, params, lora, tokenizer,
                                  max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                                  temperature=e.temperature, top_k=e.top_k, seed=cfg.seed)
    log(f"eval: generating for {len(records)} prompts, at most {e.max_new_tokens} new tokens")
    samples = run_prompts(records, tokenizer, gen, e.max_new_tokens, cfg.data.system_prompt)
    loss, tokens = (None, 0)
    if e.loss_batches:
      loss, tokens = heldout_loss(cfg, model_cfg, lora_cfg, params, lora, e.loss_batches)
    name = path if step is None else f"{path} (step {step})"
    return build_report(name, samples, max_new_tokens=e.max_new_tokens,
                        short_answer_max_words=e.short_answer_max_words, loss=loss,
                        loss_tokens=tokens or None)

  result = one(checkpoint, generate_fn)
  other = None
  if against:
    is_report = against.endswith(".json") or storage.exists(storage.join(against, "report.json"))
    if is_report:
      try:
        other = report_lib.load(against)
      except ValueError as e:
        raise EvalError(f"--against: {e}") from e
    else:
      other = one(against, generate_fn)
  s = result["summary"]
  if jax.process_index() == 0:  # every host evaluated the same way; one writes
    json_path, md_path = report_lib.write(result, out_dir, other, e.samples_in_report)
    log(f"eval: compliance {s['compliance_rate']:.1%}, hit budget {s['hit_budget_rate']:.1%};"
        f" report: {md_path} and {json_path}")
  return result


def quick_compliance(params: PyTree, lora: Optional[PyTree], cfg: config_lib.Config, tokenizer,
                     prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> float:
  """Share of `prompts` (questions) whose greedy output is in the format; for the trainer's
  periodic check. Budget: `max_new_tokens` or cfg.eval.max_new_tokens."""
  budget = max_new_tokens or cfg.eval.max_new_tokens
  gen = make_generate_fn(cfg.model, cfg.lora, params, lora, tokenizer, max_new_tokens=budget,
                         batch_size=len(prompts))
  records = [{"question": q} for q in prompts]
  samples = run_prompts(records, tokenizer, gen, budget, cfg.data.system_prompt)
  return float(np.mean([s["ok"] for s in samples])) if samples else 0.0
