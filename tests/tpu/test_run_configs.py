"""The real-run configs: every one loads, and its name says what it is."""

import glob
import os
import re

import pytest

from jax_sft import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "gemma*_s[123]_*.yaml")))
NAME = re.compile(r"(gemma2_2b|gemma3_1b)_(full|lora)_(s[123])_(1024|2048)\.yaml")


def test_all_24_runs_exist():
  names = {os.path.basename(c) for c in CONFIGS}
  assert len(names) == 24 and all(NAME.fullmatch(n) for n in names)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_matches_its_name(path):
  model, mode, session, seq = NAME.fullmatch(os.path.basename(path)).groups()
  cfg = config_lib.load(path)
  assert cfg.model.preset == model and cfg.data.max_seq_len == int(seq)
  assert cfg.lora.enabled == (mode == "lora")
  assert cfg.model.vocab_size == {"gemma2_2b": 256128, "gemma3_1b": 262144}[model]
  assert cfg.train.batch_size % 8 == 0  # v5e-8: whole rows per chip
  kinds = {s.kind for s in cfg.data.sources.values()}
  assert ("glaive" in kinds) == (session == "s2")
  if session == "s1":
    # The users' core mix: 62.9K Raiden, 20K OpenO1, 6K General_Inquiry, 10K CoT-Collection.
    counts = {name: s.count for name, s in cfg.data.sources.items()}
    assert counts == {"raiden": 62_900, "openo1": 20_000, "general_inquiry": 6_000,
                      "cot_collection": 10_000}
  s1 = config_lib.load(path.replace(f"_{session}_", "_s1_"))
  if session == "s3":
    assert cfg.train.learning_rate < s1.train.learning_rate
  assert cfg.train.time_budget == "8h30m" and cfg.checkpoint.compilation_cache_dir
