"""The eval report: `report.json` (everything) and `report.md` (for people).

A report dict is {'checkpoint', 'max_new_tokens', 'num_prompts', 'created', 'summary',
'samples'}, with 'summary' from metrics.summarize and 'samples' the per-prompt dicts.
With a second report (`--against`), every figure gets a column for each checkpoint and
the delta, and the sample generations stand side by side for the same prompts.
"""

from __future__ import annotations

import html
import json
from typing import Any, Optional, Sequence

from jax_sft import storage
from jax_sft.eval.compliance import FAILURE_KINDS

# (label, path into the summary, format, higher is better: True/False/None = neutral)
_ROWS: list[tuple[str, tuple[str, ...], str, Optional[bool]]] = [
    ("format compliance", ("compliance_rate",), "pct", True),
    ("hit the token budget", ("hit_budget_rate",), "pct", False),
    ("looping traces", ("looping_rate",), "pct", False),
    ("repetition score, mean", ("repetition_mean",), "f3", False),
    ("reasoning tokens, median", ("reasoning_tokens", "median"), "f0", None),
    ("reasoning tokens, p90", ("reasoning_tokens", "p90"), "f0", None),
    ("answer tokens, median", ("answer_tokens", "median"), "f0", None),
    ("answer tokens, p90", ("answer_tokens", "p90"), "f0", None),
    ("generated tokens, median", ("generated_tokens", "median"), "f0", None),
    ("generated tokens, p90", ("generated_tokens", "p90"), "f0", None),
    ("answer exact match (short refs)", ("answer_agreement", "all", "exact_match"), "pct", True),
    ("answer token F1 (short refs)", ("answer_agreement", "all", "f1"), "pct", True),
    ("held-out loss", ("heldout_loss",), "f4", False),
    ("held-out perplexity", ("heldout_perplexity",), "f2", False),
]

SAMPLE_CHARS = 1500  # longer texts are cut in the Markdown page (never in the JSON)


def _get(d: Any, path: Sequence[str]) -> Optional[float]:
  for key in path:
    if not isinstance(d, dict) or key not in d:
      return None
    d = d[key]
  return d


def _fmt(value: Optional[float], how: str) -> str:
  if value is None:
    return "n/a"
  if how == "pct":
    return f"{100 * value:.1f}%"
  if abs(value) >= 1e6:  # e.g. the perplexity of an untrained model
    return f"{value:.3g}"
  return f"{value:.{int(how[1:])}f}"


def _delta(a: Optional[float], b: Optional[float], how: str, better: Optional[bool]) -> str:
  if a is None or b is None:
    return ""
  d = a - b
  text = f"{100 * d:+.1f} pt" if how == "pct" else f"{d:+.{int(how[1:])}f}"
  if better is None or abs(d) < 1e-12:
    return text
  return text + (" (better)" if (d > 0) == better else " (worse)")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return lines + [""]


def _metric_rows(summaries: Sequence[dict],
                 rows=_ROWS) -> list[list[str]]:
  out = []
  for label, path, how, better in rows:
    values = [_get(s, path) for s in summaries]
    row = [label] + [_fmt(v, how) for v in values]
    if len(summaries) == 2:
      row.append(_delta(values[0], values[1], how, better))
    out.append(row)
  return out


def _cell(text: Optional[str]) -> str:
  """Text for an HTML table cell: escaped, cut, on one source line.

  Line breaks become <br> (a blank line would end the HTML block in Markdown) and
  model output is shown as text, never interpreted as markup.
  """
  if text is None:
    return "<i>(none)</i>"
  if len(text) > SAMPLE_CHARS:
    text = text[:SAMPLE_CHARS] + f" [... {len(text) - SAMPLE_CHARS} more characters]"
  return html.escape(text).replace("\n", "<br>")


def _samples_section(reports: Sequence[dict], names: Sequence[str], count: int) -> list[str]:
  lines = [f"## Sample generations ({count} of {len(reports[0]['samples'])})", ""]
  others = [{s["id"]: s for s in r["samples"]} for r in reports[1:]]
  for s in reports[0]["samples"][:count]:
    lines.append(f"### `{s['id']}` ({s['source']})")
    lines.append("")
    lines.append("**Question:** " + html.escape(" ".join(s["question"].split())[:400]))
    lines.append("")
    heads = ["reference"]
    cells = [_cell(f"<reasoning>{s.get('reference_reasoning', '')}</reasoning>\n"
                   f"<answer>{s['reference_answer']}</answer>")]
    for name, r in zip(names, [s] + [o.get(s["id"]) for o in others]):
      if r is None:
        heads.append(f"{name}: not evaluated")
        cells.append("")
        continue
      verdict = r["kind"] + (f" ({r['detail']})" if r.get("detail") else "")
      heads.append(f"{name}: {html.escape(verdict)}, {r['generated_tokens']} tokens")
      cells.append(_cell(r["output"]))
    lines.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr><tr>"
                 + "".join(f'<td valign="top">{c}</td>' for c in cells) + "</tr></table>")
    lines.append("")
  return lines


def render_markdown(report: dict, against: Optional[dict] = None, samples: int = 5) -> str:
  """The readable page: summary, failure kinds, per source, agreement, samples."""
  reports = [report] + ([against] if against else [])
  names = ["this"] + (["against"] if against else [])
  summaries = [r["summary"] for r in reports]
  heads = ["metric"] + names + (["delta"] if against else [])
  lines = ["# Evaluation report", ""]
  for name, r in zip(names, reports):
    lines.append(f"- **{name}**: `{r['checkpoint']}` ({r['num_prompts']} held-out prompts, "
                 f"greedy, at most {r['max_new_tokens']} new tokens)")
  lines += ["", "## Summary", ""]
  lines += _table(heads, _metric_rows(summaries))

  lines += ["## Format failures by kind", "",
            "Each output gets the first kind that applies, in this order "
            "(see docs/eval.md for the definitions).", ""]
  kind_rows = []
  for kind in FAILURE_KINDS:
    counts = [s["kinds"].get(kind, 0) for s in summaries]
    if any(counts):
      row = [kind] + [f"{c} ({100 * c / max(1, s['n']):.1f}%)" for c, s in zip(counts, summaries)]
      if against:
        row.append(f"{counts[0] - counts[1]:+d}")
      kind_rows.append(row)
  lines += _table(["kind"] + names + (["delta"] if against else []), kind_rows) if kind_rows \
      else ["No failures.", ""]

  lines += ["## Per source", ""]
  per_source_rows = [
      ("compliance", ("compliance_rate",), "pct", True),
      ("hit budget", ("hit_budget_rate",), "pct", False),
      ("looping", ("looping_rate",), "pct", False),
      ("reasoning tok. median", ("reasoning_tokens", "median"), "f0", None),
      ("answer tok. median", ("answer_tokens", "median"), "f0", None),
  ]
  sources = sorted(set().union(*(s["per_source"] for s in summaries)))
  rows = []
  for src in sources:
    groups = [s["per_source"].get(src, {}) for s in summaries]
    n = "/".join(str(g.get("n", 0)) for g in groups)
    for r in _metric_rows(groups, per_source_rows):
      rows.append([src, n] + r)
      src, n = "", ""
  lines += _table(["source", "n", "metric"] + names + (["delta"] if against else []), rows)

  lines += ["## Answer agreement (sources with short references)", "",
            "Exact match and token F1 after SQuAD normalization (lowercase, no punctuation, "
            "no articles); a missing answer block scores 0.", ""]
  agree_sources = sorted(set().union(*(s["answer_agreement"] for s in summaries)))
  rows = []
  for src in agree_sources:
    groups = [s["answer_agreement"].get(src, {}) for s in summaries]
    n = "/".join(str(g.get("n", 0)) for g in groups)
    for r in _metric_rows(groups, [("exact match", ("exact_match",), "pct", True),
                                   ("token F1", ("f1",), "pct", True)]):
      rows.append([src, n] + r)
      src, n = "", ""
  lines += _table(["source", "n", "metric"] + names + (["delta"] if against else []), rows) \
      if rows else ["No prompt in this set has a short reference answer.", ""]

  lines += _samples_section(reports, names, min(samples, len(report["samples"])))
  return "\n".join(lines)


def write(report: dict, out_dir: str, against: Optional[dict] = None,
          samples: int = 5) -> tuple[str, str]:
  """Writes report.json (with the other report's summary, if any) and report.md (local or gs://)."""
  payload = dict(report)
  if against is not None:
    payload["against"] = {k: against[k] for k in ("checkpoint", "max_new_tokens", "num_prompts",
                                                   "summary")}
  json_path = storage.join(out_dir, "report.json")
  md_path = storage.join(out_dir, "report.md")
  storage.write_text(json_path, json.dumps(payload, indent=1, ensure_ascii=False))
  storage.write_text(md_path, render_markdown(report, against, samples))
  return json_path, md_path


def load(path: str) -> dict:
  """A report written by `write`: the report.json file or the folder holding it."""
  if storage.resolve(path).is_dir():
    path = storage.join(path, "report.json")
  try:
    report = json.loads(storage.read_text(path))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"cannot read eval report {path}: {e}") from e
  missing = [k for k in ("checkpoint", "summary", "samples") if k not in report]
  if missing:
    raise ValueError(f"{path}: not an eval report (missing {', '.join(missing)})")
  return report
