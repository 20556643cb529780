"""Configs: composed by Hydra defaults lists, typed choices, one clear line per mistake."""

import os

import pytest

from jax_sft import cli
from jax_sft import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "configs", "gemma2_2b_lora_s1_2048.yaml")
SMOKE = os.path.join(REPO, "configs", "smoke.yaml")


def test_composition_and_group_swap():
  cfg = config_lib.load(RUN)
  assert (cfg.model.preset, cfg.lora.enabled, cfg.data.max_seq_len) == ("gemma2_2b", True, 2048)
  assert cfg.model.remat == "full" and cfg.lora.base_dtype == "bfloat16"  # base, mode/lora
  swapped = config_lib.load(RUN, ["model=gemma3_1b", "seq=1024", "train.batch_size=8"])
  assert (swapped.model.preset, swapped.model.vocab_size) == ("gemma3_1b", 262144)
  assert swapped.data.max_seq_len == 1024 and swapped.train.batch_size == 8
  assert "gemma-3" in swapped.data.tokenizer


def test_choices_are_enums_checked_once():
  cfg = config_lib.load(SMOKE, ["model.remat=dots", "train.schedule=linear"])
  assert cfg.model.remat is config_lib.Remat.dots and cfg.model.remat == "dots"
  assert isinstance(cfg.train.schedule, config_lib.Schedule)
  # Saved as plain strings (checkpoints, config.yaml), read back as the same enums.
  again = config_lib.from_dict(config_lib.to_dict(cfg))
  assert again == cfg and config_lib.to_dict(cfg)["model"]["remat"] == "dots"


@pytest.mark.parametrize("args, named", [
    (["model.remat=sometimes"], "model.remat"),
    (["train.shedule=cosine"], "train.shedule"),
    (["data.tokenizer="], "data.tokenizer"),
    (["lora.targets=[query,bogus]"], "lora.targets"),
    (["data.sources.raiden.kind=reddit"], "data.sources.raiden.kind"),
    (["train.batch_size=eight"], "train.batch_size"),
])
def test_a_bad_key_is_one_line_naming_it(args, named, capsys):
  assert cli.main(["train", SMOKE, *args]) == 2
  err = capsys.readouterr().err.strip()
  assert named in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_missing_file_and_old_inherit_are_one_line(tmp_path, capsys):
  assert cli.main(["prepare", str(tmp_path / "nope.yaml")]) == 2
  old = tmp_path / "old.yaml"
  old.write_text("inherit: base.yaml\n")
  assert cli.main(["plan", str(old)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and "not found" in err[0] and "defaults list" in err[1]
  assert all("Traceback" not in line for line in err)


def test_one_seed_feeds_data_and_training():
  cfg = config_lib.load(SMOKE, ["seed=7"])
  assert cfg.seed == 7 and not hasattr(cfg.data, "seed")
