"""What a checkpoint must share with the run that restores it.

- the model and LoRA shapes (`config_diff`, `tree_diff`): for --resume and --init-from;
- the data stream (`stream_identity`): for --resume only, since the saved iterator state
  is a position in one particular stream. A resume that would silently continue another
  stream (another mix, seed, shuffle, curriculum epoch policy or packing) is refused,
  naming each differing key.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax

from jax_sft import config as config_lib
from jax_sft.data import loader

PyTree = Any
# Config keys that change the shapes or meaning of saved weights; others may differ.
_SHAPE_KEYS = ("num_layers", "embed_dim", "num_heads", "num_kv_heads", "head_dim",
               "mlp_dim", "vocab_size", "attention_types", "sliding_window", "attn_softcap",
               "final_softcap", "query_scale", "qk_norm", "post_norms", "gating_layout")
_LORA_KEYS = ("enabled", "rank", "alpha", "targets")


def tree_diff(saved: PyTree, wanted: PyTree, limit: int = 10) -> list[str]:
  """Human lines naming paths that are missing, extra, or of another shape."""
  def flat(t):
    return {jax.tree_util.keystr(p): tuple(x.shape) for p, x in
            jax.tree_util.tree_flatten_with_path(t)[0]}
  a, b = flat(saved), flat(wanted)
  out = [f"{k}: only in the checkpoint" for k in sorted(a.keys() - b.keys())]
  out += [f"{k}: missing from the checkpoint" for k in sorted(b.keys() - a.keys())]
  out += [f"{k}: checkpoint shape {a[k]} != this run's {b[k]}"
          for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
  return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def config_diff(saved: dict, cfg: config_lib.Config) -> list[str]:
  """Lines naming model/lora keys whose saved value differs from `cfg`'s."""
  now = config_lib.to_dict(cfg)
  out = []
  for section, keys in (("model", _SHAPE_KEYS), ("lora", _LORA_KEYS)):
    for k in keys:
      a, b = saved.get(section, {}).get(k), now[section].get(k)
      if section == "lora" and k != "enabled" and not now["lora"]["enabled"]:
        continue
      if a != b:
        out.append(f"{section}.{k}: checkpoint has {a!r}, this run has {b!r}")
  return out


def iterator_epochs(cfg: config_lib.Config) -> Optional[int]:
  """How many times the training iterator repeats the split (None: forever, with max_steps)."""
  return max(1, math.ceil(cfg.train.epochs)) if cfg.train.max_steps <= 0 else None


def stream_identity(cfg: config_lib.Config, manifest_hash: Optional[str]) -> dict[str, Any]:
  """Everything that decides which batch comes next: saved with every checkpoint.

  The shuffle keys are saved as what they resolve to (None follows data.order), so a
  checkpoint from when they defaulted to true still matches a default shuffled run;
  train.curriculum_epochs is None where no curriculum is kept (it changes nothing there).
  """
  data = cfg.data
  grpo = {}
  if cfg.train.objective == "grpo":  # its stream is of prompts, drawn per step and sampled
    grpo = {f"grpo.{k}": getattr(cfg.grpo, k) for k in
            ("prompts_per_step", "num_generations", "max_prompt_tokens", "max_new_tokens")}
  return grpo | {"data.manifest_hash": manifest_hash, "seed": cfg.seed,
          "train.shuffle": loader.shuffles(data, cfg.train.shuffle),
          "data.shuffle_loader": loader.shuffles(data),
          "data.order": str(data.order), "data.packing_bins": data.packing_bins,
          "data.max_seq_len": data.max_seq_len, "train.batch_size": cfg.train.batch_size,
          "train.grad_accum": cfg.train.grad_accum, "iterator epochs": iterator_epochs(cfg),
          "train.curriculum_epochs": loader.curriculum_epochs(
              data, cfg.train.shuffle, cfg.train.curriculum_epochs)}


def stream_diff(saved_meta: dict, saved_config: dict, now: dict[str, Any]) -> list[str]:
  """Lines naming each stream key whose saved value differs from `now`'s.

  Checkpoints written before the stream identity was saved are compared on the keys
  their config holds.
  """
  saved = saved_meta.get("stream")
  if saved is None:
    flat = {f"{s}.{k}": v for s in ("data", "train") for k, v in saved_config.get(s, {}).items()}
    saved = {k: flat[k] for k in now if k in flat}
    saved["seed"] = saved_config.get("seed", now["seed"])
    saved["data.manifest_hash"] = saved_meta.get("manifest_hash")
  return [f"{k}: checkpoint has {saved[k]!r}, this run has {now[k]!r}"
          for k in now if k in saved and saved[k] != now[k]]
