"""Greedy decoding with the KV cache equals argmax over repeated full forward passes."""

import jax
import numpy as np
import pytest

from jax_sft import config as model_config
from jax_sft.model import sampler
from jax_sft.model.gemma import Transformer

MAX_NEW = 10
WIDTH = 24  # reference row width: the longest prompt plus MAX_NEW fits


@pytest.fixture(scope="module", params=["tiny_gemma2", "tiny_gemma3"])
def setup(request):
  cfg = model_config.preset(request.param)  # sliding window 8 < prompt + new tokens
  model = Transformer(cfg)
  params = jax.jit(model.init)(jax.random.key(0), np.ones((1, 4), np.int32))["params"]
  rng = np.random.default_rng(0)
  prompts = [list(rng.integers(3, cfg.vocab_size, n)) for n in (5, 11, 2)]
  return cfg, model, params, prompts


def _reference_greedy(model, params, prompt, n):
  """argmax of a full forward pass, one token at a time (one fixed-width compile)."""
  apply = jax.jit(model.apply)
  seq = list(prompt)
  for _ in range(n):
    tokens = np.zeros((1, WIDTH), np.int32)
    tokens[0, :len(seq)] = seq
    segments = (np.arange(WIDTH) < len(seq)).astype(np.int32)[None]
    logits = apply({"params": params}, tokens, np.arange(WIDTH)[None], segments)
    seq.append(int(np.argmax(logits[0, len(seq) - 1])))
  return seq[len(prompt):]


def test_greedy_equals_repeated_forward(setup):
  cfg, model, params, prompts = setup
  got = sampler.generate(params, cfg, prompts, max_new_tokens=MAX_NEW)
  for prompt, row in zip(prompts, got):
    assert row == _reference_greedy(model, params, prompt, MAX_NEW)


def test_stops_per_row_and_accepts_right_padding(setup):
  cfg, model, params, prompts = setup
  full = sampler.generate(params, cfg, prompts, max_new_tokens=MAX_NEW)
  stop = full[0][3]  # row 0 stops there; other rows stop at their first `stop`, if any
  padded = np.zeros((len(prompts), 12), np.int32)
  for i, p in enumerate(prompts):
    padded[i, :len(p)] = p
  got = sampler.generate(params, cfg, padded, max_new_tokens=MAX_NEW, stop_ids=[stop])
  for want, row in zip(full, got):
    assert row == (want[:want.index(stop)] if stop in want else want)


def test_sampling_filters():
  logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
  keys = jax.random.split(jax.random.key(0), 200)
  draw = lambda **kw: {int(sampler.sample_logits(k, logits, 1.0, **kw)[0]) for k in keys}
  assert draw(top_k=2, top_p=1.0) == {0, 1}
  assert draw(top_k=0, top_p=0.7) == {0, 1}  # 0.5 < 0.7 <= 0.8
  assert draw(top_k=0, top_p=1.0) == {0, 1, 2, 3}
