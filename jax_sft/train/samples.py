"""A few generations at the end of a run: held-out questions, greedy, in the chat template."""

from __future__ import annotations

import jax

from jax_sft import config as config_lib


def print_generations(cfg: config_lib.Config, model, state, frozen) -> list[str]:
  """Greedy completions of the first train.generations_at_end eval questions (printed)."""
  try:
    from jax_sft.model import sampler
  except ImportError as e:  # said out loud, never silently skipped
    print(f"[train] generations skipped: jax_sft.model.sampler is not available ({e})")
    return []
  from jax_sft.data import prepare, template
  from jax_sft.data.tokenizer import Tokenizer
  try:
    records = prepare.read_records(cfg.data.output_dir, "eval")
  except FileNotFoundError:
    records = prepare.read_records(cfg.data.output_dir, "train")
  records = records[:cfg.train.generations_at_end]
  tok = Tokenizer(cfg.data.tokenizer)
  params, lora = (frozen, state.params) if cfg.lora.enabled else (state.params, None)
  params, lora = jax.device_get(params), jax.device_get(lora)
  system = getattr(cfg.data, "system_prompt", "")  # the same prompt the data was rendered with
  prompts = [template.render_prompt(r["question"], system) for r in records]
  ids = [[tok.bos_id] + tok.encode(p) for p in prompts]
  new = sampler.generate(params, cfg.model, ids, lora=lora,
                         lora_config=cfg.lora if lora is not None else None,
                         max_new_tokens=cfg.train.generation_max_new_tokens,
                         stop_ids=(tok.end_of_turn_id, tok.eos_id), pad_id=tok.pad_id)
  outs = [tok.decode(n) for n in new]
  if jax.process_index() == 0:
    for r, out in zip(records, outs):
      print(f"[train] --- {r['id']}\n  Q: {r['question'][:200]}\n  A: {out[:400]}", flush=True)
  return outs
