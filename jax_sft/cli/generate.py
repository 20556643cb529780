"""`jax-sft generate`: sample a completion from a checkpoint for one prompt.

    jax-sft generate --checkpoint /kaggle/input/gemma-2/flax/gemma2-2b-it/1 --preset gemma2_2b \
        --tokenizer /kaggle/input/.../tokenizer.model --prompt "Why is the sky blue?"

The checkpoint may be a training run or any released format jax_sft reads (Kaggle Flax,
Keras preset, safetensors, GGUF). The prompt is wrapped in the Gemma chat template, unless
--raw, which sends it as is after <bos> (for pretrained base models):

    jax-sft generate --checkpoint gemma-3-270m-q4_k_m.gguf --raw --prompt "Once upon a time"

A .gguf carries its config and its tokenizer; neither needs a flag.
"""

from __future__ import annotations

import argparse
import os
import sys

from jax_sft import config as config_lib
from jax_sft.data import gguf_vocab
from jax_sft.data.template import render_prompt
from jax_sft.data.tokenizer import Tokenizer
from jax_sft.model import sampler
from jax_sft.train import weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """Flags of `jax-sft generate`."""
  parser.add_argument("--checkpoint", required=True,
                      help="checkpoint dir, .safetensors or .gguf file, or a training run")
  parser.add_argument("--config", help="run config YAML (model, lora and data.tokenizer come from it)")
  parser.add_argument("--preset", help="model preset when neither --config nor the checkpoint says")
  parser.add_argument("--tokenizer",
                      help="tokenizer.model, .gguf, Kaggle dir or Keras preset dir")
  parser.add_argument("--prompt", required=True, help="the user's question (templated for you)")
  parser.add_argument("--raw", action="store_true",
                      help="send --prompt as is (after <bos>), without the chat template")
  parser.add_argument("--max-new-tokens", type=int, default=256)
  parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  parser.add_argument("--top-k", type=int, default=0, help="0 = no top-k filter")
  parser.add_argument("--top-p", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("overrides", nargs="*", help="config overrides key.path=value")


def _model_config(args) -> tuple[config_lib.ModelConfig, str]:
  """(model config, tokenizer path from the config or "")."""
  if args.config:
    cfg = config_lib.load(args.config, args.overrides)
    return cfg.model, cfg.data.tokenizer
  if args.preset:
    try:
      return config_lib.preset(args.preset), ""
    except ValueError as e:
      raise config_lib.ConfigError(f"--preset: {e}") from None
  found = weights.model_config_at(args.checkpoint)
  if found is None:
    raise config_lib.ConfigError(
        f"{args.checkpoint}: the checkpoint carries no model config; pass --preset"
        f" (one of {sorted(config_lib.PRESETS)}) or --config")
  return found, ""


def _tokenizer_path(args, config_tokenizer: str) -> str:
  if args.tokenizer:
    return args.tokenizer
  if config_tokenizer:
    return config_tokenizer
  if args.checkpoint.endswith(".gguf"):
    return args.checkpoint  # a GGUF carries its own vocabulary
  folder = args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint)
  for rel in ("tokenizer.model", "assets/tokenizer/vocabulary.spm", "../tokenizer.model"):
    if os.path.exists(os.path.join(folder, rel)):
      return os.path.join(folder, rel)
  raise config_lib.ConfigError(f"no tokenizer found next to {args.checkpoint}; pass --tokenizer")


def run(args) -> int:
  """Load, template, sample, print the completion."""
  if not os.path.exists(args.checkpoint):
    print(f"jax-sft generate: {args.checkpoint}: no such checkpoint", file=sys.stderr)
    return 2
  try:
    model_cfg, config_tokenizer = _model_config(args)
    tokenizer = Tokenizer(_tokenizer_path(args, config_tokenizer))
    gguf_vocab.check_fits(tokenizer.vocab_size, model_cfg.vocab_size, tokenizer.path)
    params = weights.load(args.checkpoint, model_cfg)
  except (ValueError, FileNotFoundError) as e:  # GGUF, vocab and shape errors name the file
    print(f"jax-sft generate: {e}", file=sys.stderr)
    return 2
  text = args.prompt if args.raw else render_prompt(args.prompt)
  prompt_ids = [tokenizer.bos_id] + tokenizer.encode(text)
  [completion] = sampler.generate(
      params, model_cfg, [prompt_ids], max_new_tokens=args.max_new_tokens,
      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
      stop_ids=(tokenizer.end_of_turn_id, tokenizer.eos_id), pad_id=tokenizer.pad_id)
  sys.stdout.write(tokenizer.decode(completion) + "\n")
  return 0
