"""`jax-sft grpo CONFIG --init-from SFT_RUN [key=value ...]`: the GRPO polish after SFT.

The same trainer as `jax-sft train` (train.objective=grpo): mesh, shardings, Orbax sessions
with exact resume (--resume), --time-budget, SIGTERM, --init-from, metrics.jsonl and
TensorBoard; the rewards are the eval's checks (jax_sft/eval/rewards.py).
"""

from __future__ import annotations

import argparse

from jax_sft import config as config_lib
from jax_sft.cli import train as train_cmd
from jax_sft.eval import rewards


def add_arguments(p: argparse.ArgumentParser) -> None:
  train_cmd.add_arguments(p)


def reward_fn(cfg: config_lib.Config):
  """The combined reward of a batch of completions, with each component for the log."""
  def score(texts, hit_budgets, references):
    return rewards.score(texts, hit_budgets, references, cfg.grpo.rewards,
                         cfg.grpo.short_answer_max_words)
  return score


def run(args: argparse.Namespace) -> int:
  cfg = train_cmd.load_config(args, ["train.objective=grpo"])
  return 2 if cfg is None else train_cmd.train(args, cfg, "grpo", reward_fn=reward_fn(cfg))
