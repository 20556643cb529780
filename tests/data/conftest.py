"""Shared fixtures: one prepared sample mix per test session."""

import dataclasses

import pytest

from jax_sft import config as config_lib
from jax_sft.data import prepare

import os

SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")


def smoke_data_config(output_dir, **overrides):
  cfg = config_lib.load(SMOKE).data
  return dataclasses.replace(cfg, output_dir=str(output_dir), num_workers=0, **overrides)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
  cfg = smoke_data_config(tmp_path_factory.mktemp("smoke"))
  return cfg, prepare.prepare(cfg)


@pytest.fixture
def make_cfg():
  """smoke_data_config as a fixture (test modules here are not a package)."""
  return smoke_data_config
