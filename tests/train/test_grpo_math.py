"""GRPO's arithmetic against a NumPy reference written here, and the LoRA reference policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_sft import config as config_lib
from jax_sft.model import lora as lora_lib
from jax_sft.model.gemma import Transformer
from jax_sft.train import grpo, grpo_loss, optimizer, state as state_lib, weights


def _numpy_advantages(rewards, group):
  out = []
  for start in range(0, len(rewards), group):
    r = np.array(rewards[start:start + group], np.float64)
    mu = sum(r) / len(r)
    sd = (sum((x - mu) ** 2 for x in r) / len(r)) ** 0.5
    out += [(x - mu) / (sd + 1e-4) for x in r]
  return np.array(out)


def _numpy_loss(logp, old, ref, adv, mask, eps, beta):
  per_seq = []
  for i in range(logp.shape[0]):
    total, n = 0.0, 0
    for t in range(logp.shape[1]):
      if not mask[i, t]:
        continue
      ratio = np.exp(logp[i, t] - old[i, t])
      obj = min(ratio * adv[i], np.clip(ratio, 1 - eps, 1 + eps) * adv[i])
      kl = np.exp(ref[i, t] - logp[i, t]) - (ref[i, t] - logp[i, t]) - 1
      total += -obj + beta * kl
      n += 1
    per_seq.append(total / max(n, 1))
  return np.mean(per_seq)


def test_group_advantages_match_numpy():
  rewards = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
  got = grpo_loss.group_advantages(np.array(rewards), group=4)
  np.testing.assert_allclose(got, _numpy_advantages(rewards, 4), rtol=1e-6)
  assert np.all(got[4:] == 0)  # a group that agrees teaches nothing


def test_loss_matches_numpy_and_clips():
  rng = np.random.default_rng(0)
  logp = rng.normal(-2, 1, (6, 9)).astype(np.float32)
  old = (logp + rng.normal(0, 0.4, logp.shape)).astype(np.float32)  # some ratios past 1 +- eps
  ref = (logp + rng.normal(0, 0.3, logp.shape)).astype(np.float32)
  adv = rng.normal(0, 1, 6).astype(np.float32)
  mask = (rng.random(logp.shape) > 0.3).astype(np.float32)
  loss, m = grpo_loss.grpo_loss(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(ref),
                                jnp.asarray(adv), jnp.asarray(mask), epsilon=0.2, beta=0.04)
  want = _numpy_loss(logp, old, ref, adv, mask, 0.2, 0.04)
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert 0.0 < float(m["clip_fraction"]) < 1.0 and float(m["kl"]) > 0.0
  # Where old == logp (one update per batch of samples), the ratio is 1: nothing is clipped.
  _, m1 = grpo_loss.grpo_loss(jnp.asarray(logp), jnp.asarray(logp), jnp.asarray(ref),
                              jnp.asarray(adv), jnp.asarray(mask), epsilon=0.2, beta=0.04)
  assert float(m1["clip_fraction"]) == 0.0 and float(m1["ratio"]) == pytest.approx(1.0)


def test_token_logprobs_equal_log_softmax_of_full_logits(assert_close):
  cfg = config_lib.preset("tiny_gemma2")
  params = Transformer(cfg).init(jax.random.key(0), jnp.ones((2, 11), jnp.int32))["params"]
  tokens = jax.random.randint(jax.random.key(1), (2, 11), 0, cfg.vocab_size)
  targets = jax.random.randint(jax.random.key(2), (2, 11), 0, cfg.vocab_size)
  logits = Transformer(cfg).apply({"params": params}, tokens)  # soft-capped, full vocabulary
  want = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
  assert float(jnp.max(jnp.abs(want))) > 1.0  # not a comparison of near-zero numbers
  hidden = Transformer(cfg).apply({"params": params}, tokens, return_hidden=True)
  got = grpo_loss.token_logprobs(hidden, params["embedder"]["input_embedding"], targets,
                                 cfg.final_softcap, chunk=4)  # 11 positions: a ragged chunk
  assert_close(got, want, rel=1e-5)


def test_update_batch_marks_only_completion_tokens():
  b = grpo.update_batch([np.array([5, 6])], np.array([[7, 1, 0]]), np.array([2]), 3, 0)
  np.testing.assert_array_equal(b["inputs"], [[0, 5, 6, 7, 1]])
  np.testing.assert_array_equal(b["targets"], [[5, 6, 7, 1, 0]])
  np.testing.assert_array_equal(b["segment_ids"], [[0, 1, 1, 1, 1]])
  np.testing.assert_array_equal(b["positions"], [[0, 0, 1, 2, 3]])
  np.testing.assert_array_equal(b["completion_mask"], [[0, 0, 1, 1, 0]])


def _cfg(**lora):
  return config_lib.from_dict({
      "model": {"preset": "tiny_gemma2", "loss_chunk": 8},
      "lora": dict({"enabled": True, "rank": 4}, **lora),
      "grpo": {"num_generations": 2, "max_prompt_tokens": 6, "max_new_tokens": 6, "beta": 0.1}})


def test_lora_reference_is_the_base_with_adapters_off():
  cfg = _cfg()
  tx = optimizer.make_optimizer(cfg.train, 10)
  update = jax.jit(grpo.make_update(cfg, tx, optimizer.make_schedule(cfg.train, 10), lora=True))
  base = weights.random_params(cfg, 0)
  fresh = weights.init_adapters(cfg, 0)  # B = 0: the policy is the base, bit for bit
  batch = grpo.update_batch([np.array([2, 5, 9])] * 2, np.array([[4, 7, 1, 0], [8, 1, 0, 0]]),
                            np.array([3, 2]), 6, 0)
  batch.update(advantages=np.array([1.0, -1.0], np.float32),
               old_logp=np.zeros_like(batch["completion_mask"]))
  _, m = update(state_lib.create(fresh, tx, 0), base, {}, batch)
  assert float(m["kl"]) == 0.0
  moved = jax.tree.map(lambda x: x + 0.05, fresh)  # adapters that changed the policy
  _, m = update(state_lib.create(moved, tx, 0), base, {}, batch)
  assert float(m["kl"]) > 0.0
  merged = lora_lib.merge(base, moved, cfg.model, cfg.lora)  # and the policy is what is merged
  assert not np.allclose(np.asarray(merged["layer_0"]["attn"]["q_einsum"]["w"]),
                         np.asarray(base["layer_0"]["attn"]["q_einsum"]["w"]))
