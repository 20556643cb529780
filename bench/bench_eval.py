"""Throughput of the eval's pure scoring: compliance checks and repetition scores per second.

    python bench/bench_eval.py   # one JSON line on stdout

Generation dominates a real eval; this shows the scoring is never the bottleneck
(768-token outputs, a mix of compliant, looping and malformed texts).
"""

from __future__ import annotations

import json
import random
import time

from jax_sft.eval import compliance, metrics

WORDS = ("the light keeper counted four seconds of light and six of dark while the sea"
         " turned over slow and patient beneath the tower wait let me check that again").split()


def _outputs(n: int, words: int = 560, seed: int = 0) -> list[tuple[str, bool]]:
  rng = random.Random(seed)
  out = []
  for i in range(n):
    trace = " ".join(rng.choice(WORDS) for _ in range(words))
    kind = i % 4
    if kind == 0:
      out.append((f"<reasoning>{trace}</reasoning>\n<answer>Four.</answer>", False))
    elif kind == 1:
      out.append(("<reasoning>" + "Wait, let me check that again. " * 90, True))
    elif kind == 2:
      out.append((f"Sure! <reasoning>{trace}</reasoning><answer>x</answer>", False))
    else:
      out.append((f"<reasoning>{trace}</reasoning>", False))
  return out


def main() -> None:
  outputs = _outputs(2000)
  chars = sum(len(t) for t, _ in outputs)
  t0 = time.perf_counter()
  verdicts = [compliance.check(t, hit_budget=h) for t, h in outputs]
  t1 = time.perf_counter()
  scores = [metrics.repetition_score(v.reasoning or t) for v, (t, _) in zip(verdicts, outputs)]
  t2 = time.perf_counter()
  print(json.dumps({
      "bench": "eval_scoring",
      "outputs": len(outputs),
      "mean_chars": round(chars / len(outputs)),
      "compliance_checks_per_s": round(len(outputs) / (t1 - t0)),
      "repetition_scores_per_s": round(len(outputs) / (t2 - t1)),
      "compliance_rate": sum(v.ok for v in verdicts) / len(verdicts),
      "looping_rate": sum(s >= metrics.LOOP_THRESHOLD for s in scores) / len(scores),
  }))


if __name__ == "__main__":
  main()
