"""Writes the bundled sample datasets: invented rows in the five real layouts.

Every row is made up. Each file has the same row count and the same edge cases at the
same row numbers as the shared stand-ins (`../shared/datasets/README.md`), so one
set of tests covers both. Run: `python -m tools.make_sample_datasets` (from the repo root).
"""

from __future__ import annotations

import csv
import json
import os

from tools.sample_texts import CHINESE, CODE, MATH, TOPICS

# The bundled sample datasets live in the package: jax_sft/samples/datasets.
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jax_sft",
                    "samples", "datasets")


def _trace(opening: str, facts: list[str], closing: str) -> str:
  return opening + " " + " ".join(facts[:2]) + "\n\n" + " ".join(facts[2:]) + "\n\n" + closing


def _topic(i: int):
  return TOPICS[i % len(TOPICS)]


def write_raiden() -> None:
  """Two CSV parts of 15 rows; edge cases at Part1 rows 3, 4, 6, 9 and Part2 rows 0, 3."""
  parts = [[], []]
  for part in range(2):
    for r in range(15):
      q, facts, ans = _topic(part * 15 + r)
      prompt = f"Write a short reflective essay answering this question: {q}"
      response = ("<think>\n" + _trace("Okay, the user wants a short essay on this.", facts,
                                       "So the essay should build up to one clear point.")
                  + "\n</think>\n\n" + ans + " " + facts[0])
      parts[part].append((prompt, response))
  p1, p2 = parts
  p1[3] = ('Write a scene where a chef, tired and "done with it all", argues with a critic.\n'
           'Keep it under 300 words, use dialogue, and end on a hopeful note.',
           p1[3][1])
  p1[4] = ("Three friends, Ana, Ben and Cleo, each own one pet: a cat, a dog or a parrot. "
           "Ana does not own the dog. Ben owns neither the dog nor the cat. Who owns which pet?",
           "<think>\nBen owns neither the dog nor the cat, so Ben owns the parrot. Then Ana and Cleo "
           "have the cat and the dog. Ana does not own the dog, so Ana owns the cat and Cleo owns "
           "the dog. Checking every clue: all hold, and no other assignment works.\n</think>\n\n"
           "Ana owns the cat, Ben owns the parrot, and Cleo owns the dog.")
  q, facts, _ = _topic(6)
  p1[6] = (f"Write a short reflective essay answering this question: {q}",
           "<think>\nOkay, the user wants an essay. " + " ".join(facts) + " Let me also think about")
  loop = "Wait, I should check that again before going further."
  q, facts, ans = _topic(9)
  p1[9] = (f"Write a short reflective essay answering this question: {q}",
           "<think>\n" + facts[0] + " " + " ".join([loop] * 44) + "\n</think>\n\nIt depends.")
  q, facts, ans = _topic(15)
  body = []
  i = 0
  while len(" ".join(body)) < 20500:
    f = TOPICS[i % len(TOPICS)][1]
    body.append(f"Consider another angle, number {i + 1}. " + " ".join(f))
    i += 1
  p2[0] = (f"Write a long, thorough essay answering this question: {q}",
           "<think>\n" + " ".join(body) + "\n</think>\n\n" + ans)
  p2[3] = (p2[3][0], p2[3][1].split("</think>")[0] + "</think>\n\n")
  for part, rows in zip((1, 2), parts):
    with open(os.path.join(HERE, "raiden", f"Raiden_DSR1_Part{part}.csv"), "w", newline="",
              encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(["prompt", "response"])
      w.writerows(rows)


def write_openo1() -> None:
  """30 JSONL rows: Chinese 4/12/20, duplicates 6=19, no Output 7, whitespace 10, lowercase 14,
  math 1/8/15, code 3/11/18."""
  rows = []
  for r in range(30):
    q, facts, ans = _topic(r + 7)
    thought = _trace("Alright, I need to explain this clearly.", facts, "That covers the main points.")
    rows.append({"instruction": f"Explain in plain words for a general audience: {q}",
                 "output": f"<Thought>\n{thought}\n</Thought>\n<Output>\n{ans}\n</Output>"})
  for r, (q, t, a) in zip((4, 12, 20), CHINESE):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  for r, (q, t, a) in zip((1, 8, 15), MATH):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  for r, (q, t, a) in zip((3, 11, 18), CODE):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  rows[19] = dict(rows[6])
  rows[7]["output"] = rows[7]["output"].split("<Output>")[0].rstrip() + "\n"
  q, facts, ans = _topic(17)
  rows[10] = {"instruction": f"Explain in plain words for a general audience: {q}",
              "output": f"<Thought>\n\n\n  \t{' '.join(facts)}  \n\n\t\n</Thought>\n<Output>\n\n"
                        f"   {ans}\t \n\n</Output>\n\n\n"}
  q, facts, ans = _topic(21)
  rows[14] = {"instruction": f"Explain in plain words for a general audience: {q}",
              "output": f"<thought>\n{' '.join(facts)}\n</thought>\n<output>\n{ans}\n</output>"}
  with open(os.path.join(HERE, "openo1", "OpenO1-SFT.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_general_inquiry() -> None:
  """20 JSONL rows: row 5 reasoning without <think>, row 8 difficulty null, row 11 answer ""."""
  topics = ["Science", "History", "Psychology", "Society", "Nature"]
  rows = []
  for r in range(20):
    q, facts, ans = _topic(r + 3)
    reasoning = ("<think>\nTo answer this well, I first identified the core idea. "
                 + " ".join(facts) + "\nThus, the answer summarizes these points.\n</think>")
    answer = f"### Short answer\n{ans}\n\n### Details\n- " + "\n- ".join(facts[:3])
    rows.append({"question": q, "answer": answer,
                 "metadata": {"reasoning": reasoning, "difficulty": 1 + (r * 3) % 5,
                              "topic": topics[r % len(topics)]}})
  rows[5]["metadata"]["reasoning"] = rows[5]["metadata"]["reasoning"][len("<think>\n"):-len("\n</think>")]
  rows[8]["metadata"]["difficulty"] = None
  rows[11]["answer"] = ""
  with open(os.path.join(HERE, "general_inquiry", "train.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_cot_collection() -> None:
  """One JSON object of 30 entries; 199448 empty rationale, 308593 empty target,
  403918 has the only non-ASCII char, 417564 is math."""
  ids = [str(104233 + 13636 * i + (i * 7) % 5) for i in range(30)]
  ids[7], ids[15], ids[22], ids[23] = "199448", "308593", "403918", "417564"
  tasks = ["anli_r1", "cos_e_v1.11", "qasc", "sciq", "esnli"]
  out = {}
  for i, key in enumerate(ids):
    q, facts, ans = _topic(i + 5)
    source = (f"{facts[0]} {facts[1]}\n\nBased on the paragraph above can we conclude that "
              f"\"{facts[2].rstrip('.')}\"?\n\nOPTIONS:\n- Yes\n- It's impossible to say\n- No")
    out[key] = {"source": source, "target": "It's impossible to say",
                "rationale": f"The paragraph says: {facts[0]} It does not mention the claim, so it cannot be concluded.",
                "task": tasks[i % len(tasks)], "type": "CoT"}
  out["199448"]["rationale"] = ""
  out["308593"]["target"] = ""
  out["403918"]["source"] = ("Mara opened a small café on the corner of Elm Street in the spring. "
                             "By autumn it had a line out the door every morning.\n\n"
                             "Question: Was the business successful?\nOPTIONS:\n- Yes\n- No")
  out["403918"]["target"] = "Yes"
  out["403918"]["rationale"] = "A line out the door every morning means many customers, which suggests success."
  out["417564"] = {"source": "Solve 5*x + 4 = 29 for x.", "target": "5",
                   "rationale": "Subtract 4 from both sides to get 5*x = 25. Divide by 5 to get x = 5.",
                   "task": "math_dataset_algebra__linear_1d", "type": "CoT"}
  with open(os.path.join(HERE, "cot_collection", "CoT_collection_en.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=2)


def write_glaive() -> None:
  """25 JSONL rows: row 4 no <think>, row 8 whitespace prompt, row 10 unclosed <think>,
  math 2/11, code 5 (Python) and 15 (JavaScript)."""
  rows = []
  for r in range(25):
    q, facts, ans = _topic(r + 13)
    trace = _trace("Okay, so I need to figure this out.", facts, "I think that covers it.")
    rows.append({"prompt": f"I have been wondering about this for a while. {q} What do experts say?", "response": f"<think>\n{trace}\n</think>\n\n{ans}"})
  rows[2] = {"prompt": "What is the sum of all even numbers from 2 to 50 inclusive?",
             "response": "<think>\nThe even numbers 2, 4, ..., 50 are 25 terms. Their sum is 25 × (2 + 50) / 2 = 650.\n</think>\n\nThe sum is 650."}
  rows[11] = {"prompt": "If a jacket costs $80 and is discounted by 25%, what is the sale price?",
              "response": "<think>\n25% of 80 is 20. 80 - 20 = 60.\n</think>\n\nThe sale price is $60."}
  rows[5] = {"prompt": "How do I write a Python function that checks if a number is prime?",
             "response": "<think>\nTrial division up to the square root is enough.\n</think>\n\n```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n```"}
  rows[15] = {"prompt": "How do I capitalize the first letter of a string in JavaScript?",
              "response": "<think>\nTake the first character, uppercase it, and append the rest.\n</think>\n\n```javascript\nconst capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);\n```"}
  rows[4]["response"] = rows[4]["response"].split("</think>\n\n")[1]
  rows[8]["prompt"] = "   \n\t  \n"
  rows[10]["response"] = rows[10]["response"].split("\n</think>")[0]
  with open(os.path.join(HERE, "glaive", "train-00000-of-00001.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
  for name in ("raiden", "openo1", "general_inquiry", "cot_collection", "glaive"):
    os.makedirs(os.path.join(HERE, name), exist_ok=True)
  write_raiden()
  write_openo1()
  write_general_inquiry()
  write_cot_collection()
  write_glaive()


if __name__ == "__main__":
  main()
