"""Where a compiled step's memory goes: XLA's buffers live at the peak, grouped by kind.

`jax-sft plan --memory DIR` has the TPU compiler dump its buffer assignment into DIR
(`xla_dump_to`); this module reads two of the files it writes:

  *after_optimizations-live-range.txt   "Live ranges at N (peak):" then one line per
                                        buffer live there: `name{index}: B bytes`
  *after_optimizations.txt              the optimized HLO: each instruction's opcode,
                                        shape and the JAX op_name it came from

and sorts every buffer at the peak into a kind by what made it (the first rule that
matches the op_name, opcode and shape wins; `KINDS` lists them with what each means).
The numbers are XLA's own; the kinds are a reading of the op_names, so a buffer that a
fusion shares between two roles is counted once, under the first.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Callable, Optional

import numpy as np

GiB = 2**30

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_VALUE = re.compile(r"\s*value: <\d+ (\S+) @\d+> \(size=(\d+),offset=(\d+)\)")
_RANGE = re.compile(r"\s+(\S+):(\d+)-(\d+)$")


@dataclasses.dataclass
class Buffer:
  """One value live at the peak."""

  name: str  # HLO instruction (and tuple index)
  size: int  # bytes
  opcode: str
  shape: str
  op_name: str  # the JAX operation it came from ("" when XLA made it up)


def _is_weight_grad(b: Buffer) -> bool:
  return "transpose(" in b.op_name and re.search(r"\b(w|input_embedding)\b|,[A-Z]*D[A-Z]*->[A-Z]*D[A-Z]*$|->[CKNDFHV]+\b", b.op_name) is not None and "B" not in _out_letters(b.op_name)


def _out_letters(op_name: str) -> str:
  """The output letters of the einsum an op_name names ('' when it names none)."""
  m = re.search(r"([A-Za-z]+),([A-Za-z]+)->([A-Za-z]+)", op_name)
  return m.group(3) if m else ""


# (kind, what it is, predicate). Order matters: the first match wins.
KINDS: list[tuple[str, str, Callable[[Buffer], bool]]] = [
    ("arguments", "weights, optimizer state and batch passed in (not temporaries)",
     lambda b: b.op_name.startswith("args[") and b.opcode == "parameter"),
    ("loss chunks", "the fused chunked loss: one chunk's [B, chunk, V] logits, its gradient, dh",
     lambda b: bool(re.search(r"jvp\(\)/while|BCD,VD->BCV|BCV,|_fused_loss|cond/branch", b.op_name))),
    ("attention scores", "XLA attention's [B, K, T, G, S] scores, probabilities, masks; splash's"
     " residuals", lambda b: bool(re.search(r"BTKGS|BKTGS|BKXS|attn/(softmax|div|exp|reduce_max|sub"
                                           r"|select_n|tanh|where|pjit|splash)|_where|splash|"
                                           r"Transformer\)/(and|ge|lt|eq|ne)\b", b.op_name))),
    ("gathered weights", "a whole weight all-gathered from its shards for a matmul",
     lambda b: b.opcode in ("all-gather", "all-gather-start", "all-gather-done")
     or (b.opcode in ("fusion",) and "async-collective" in b.name and "transpose(" not in b.op_name)
     or (b.name.startswith("async-collective-done") and "transpose(" not in b.op_name)),
    ("weight gradients", "gradients of weights, before and after their reduce-scatter",
     lambda b: b.opcode in ("reduce-scatter", "all-reduce", "all-reduce-start")
     or (b.name.startswith("async-collective") and "transpose(" in b.op_name)
     or _is_weight_grad(b)),
    ("rematerialized activations", "a layer's activations recomputed in the backward pass",
     lambda b: "rematted_computation" in b.op_name),
    ("activation gradients", "cotangents of activations in the backward pass",
     lambda b: "transpose(" in b.op_name),
    ("saved activations", "forward values kept for the backward pass (per-layer inputs under"
     " remat)", lambda b: "jvp(" in b.op_name),
    ("optimizer update", "AdamW and the rounding of the new state (after the gradients)",
     lambda b: bool(b.op_name) and "jvp(" not in b.op_name),
    ("other", "buffers XLA made without an op_name (copies, layouts, prefetches)",
     lambda b: True),
]


def find_dump(directory: str) -> tuple[str, str, str]:
  """(buffer assignment, live ranges, optimized HLO) of the largest module in `directory`."""
  found = glob.glob(os.path.join(directory, "*after_optimizations-buffer-assignment.txt"))
  if not found:
    raise FileNotFoundError(f"{directory}: no *after_optimizations-buffer-assignment.txt")
  assignment = max(found, key=os.path.getsize)
  live = assignment.replace("-buffer-assignment.txt", "-live-range.txt")
  hlo = assignment.replace("-buffer-assignment.txt", ".txt")
  for path in (live, hlo):
    if not os.path.exists(path):
      raise FileNotFoundError(path)
  return assignment, live, hlo


def temp_values(assignment_path: str) -> tuple[int, list[tuple[str, int, int]]]:
  """(arena bytes, [(value, bytes, offset)]) of the step's temporary arena in HBM.

  The arena is the largest `preallocated-temp` allocation of the default memory space
  (XLA packs every temporary into it at an offset; its size is what memory_analysis
  calls temp, less a few small allocations).
  """
  best, values, current = (-1, 0), [], None
  with open(assignment_path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("allocation "):
        m = re.match(r"allocation (\d+): size (\d+)(.*)", line)
        temp = "preallocated-temp" in m.group(3) and "color" not in m.group(3)
        current = int(m.group(1)) if temp and int(m.group(2)) > best[1] else None
        if current is not None:
          best, values = (current, int(m.group(2))), []
        continue
      if current is not None:
        m = _VALUE.match(line)
        if m:
          values.append((m.group(1), int(m.group(2)), int(m.group(3))))
  return best[1], values


def live_ranges(live_range_path: str) -> dict[str, tuple[int, int]]:
  """{value: (first, last) position in the schedule} from the BufferLiveRange section."""
  out, on = {}, False
  with open(live_range_path, encoding="utf-8") as f:
    for line in f:
      if line.startswith("  BufferLiveRange:"):
        on = True
        continue
      if on:
        m = _RANGE.match(line)
        if not m:
          break
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
  return out


def peak_buffers(assignment_path: str, live_range_path: str) -> tuple[int, int, list]:
  """(arena bytes, most bytes live at once, [(value, bytes)] live at that moment)."""
  arena, values = temp_values(assignment_path)
  ranges = live_ranges(live_range_path)
  spans = [(ranges[v if "{" in v else v + "{}"], size, v) for v, size, _ in values
           if (v if "{" in v else v + "{}") in ranges]
  if not spans:
    return arena, 0, []
  change = np.zeros(max(r[1] for r, _, _ in spans) + 2, np.int64)
  for (first, last), size, _ in spans:
    change[first] += size
    change[last + 1] -= size
  live = np.cumsum(change)
  at = int(np.argmax(live))
  return arena, int(live[at]), [(v, size) for (first, last), size, v in spans
                                if first <= at <= last]


def instructions(hlo_path: str) -> dict[str, tuple[str, str, str, list[str], str]]:
  """{name: (opcode, shape, op_name, operands, called computation)} of every instruction.

  Names are unique across the module's computations in XLA's dumps.
  """
  found = {}
  with open(hlo_path, encoding="utf-8") as f:
    for line in f:
      m = _INSTR.match(line)
      if not m:
        continue
      op = _OP_NAME.search(line)
      args = line[m.end():].split(")", 1)[0]
      calls = re.search(r"calls=%?([\w.\-]+)", line)
      found[m.group(1)] = (m.group(3), m.group(2)[:120], op.group(1) if op else "",
                           re.findall(r"%([\w.\-]+)", args), calls.group(1) if calls else "")
  return found


def _computations(hlo_path: str) -> dict[str, list[str]]:
  """{computation name: its instruction names}, to read a fusion's op_names from inside."""
  out, current = {}, None
  with open(hlo_path, encoding="utf-8") as f:
    for line in f:
      head = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
      if head and not line.startswith(" "):
        current = out.setdefault(head.group(1), [])
        continue
      m = _INSTR.match(line)
      if m and current is not None:
        current.append(m.group(1))
  return out


def _resolve(name: str, table: dict, comps: dict, depth: int = 0) -> str:
  """An op_name for an instruction XLA made: a fusion's from inside, else an operand's."""
  if name not in table or depth > 6:
    return ""
  opcode, _, op_name, operands, calls = table[name]
  if op_name:
    return op_name
  for inner in reversed(comps.get(calls, [])):
    if table.get(inner, ("", "", ""))[2]:
      return table[inner][2]
  for operand in operands:
    found = _resolve(operand, table, comps, depth + 1)
    if found:
      return found
  return ""


def classify(b: Buffer) -> str:
  """The kind (KINDS) of one buffer."""
  return next(kind for kind, _, test in KINDS if test(b))


def account(directory: str) -> dict:
  """{'peak_bytes', 'kinds': {kind: {'bytes', 'count', 'largest': Buffer}}, 'buffers'}."""
  assignment, live, hlo = find_dump(directory)
  arena, peak_bytes, peak = peak_buffers(assignment, live)
  table, comps = instructions(hlo), _computations(hlo)
  kinds: dict[str, dict] = {kind: {"bytes": 0, "count": 0, "largest": None} for kind, _, _ in KINDS}
  buffers = []
  for value, size in peak:
    name = value.split("{")[0]
    opcode, shape = table.get(name, ("", ""))[:2]
    b = Buffer(value, size, opcode, shape, _resolve(name, table, comps))
    k = kinds[classify(b)]
    k["bytes"] += size
    k["count"] += 1
    if k["largest"] is None or size > k["largest"].size:
      k["largest"] = b
    buffers.append(b)
  return {"arena_bytes": arena, "peak_bytes": peak_bytes, "kinds": kinds, "buffers": buffers}


def _short(op_name: str) -> str:
  op = re.sub(r"^jit\([^)]*\)/", "", op_name)
  return re.sub(r"layer_\d+", "layer_*", op)[-90:]


def render(report: dict, temp_bytes: Optional[int] = None) -> str:
  """A Markdown table: each kind's GiB at the peak, buffer count and largest buffer."""
  lines = ["| kind | GiB at the peak | buffers | largest (shape, from) |", "|---|---|---|---|"]
  for kind, _, _ in KINDS:
    k = report["kinds"][kind]
    if not k["count"]:
      continue
    big = k["largest"]
    lines.append(f"| {kind} | {k['bytes'] / GiB:.2f} | {k['count']} | "
                 f"{big.size / 2**20:.0f} MiB `{big.shape.split('{')[0]}` {_short(big.op_name)} |")
  total = report["peak_bytes"] / GiB
  lines.append(f"| **live at the peak** | **{total:.2f}** | {len(report['buffers'])} | |")
  lines.append(f"| temporary arena (peak + fragmentation) | {report['arena_bytes'] / GiB:.2f} | | |")
  if temp_bytes is not None:
    lines.append(f"\nXLA's temp_size_in_bytes: {temp_bytes / GiB:.2f} GiB")
  return "\n".join(lines)


def render_kinds(kinds: dict[str, int], temp_bytes: Optional[int] = None) -> str:
  """The `jax-sft plan --memory` table from a Plan's memory_kinds ({kind: bytes at the peak})."""
  width = max(len(k) for k, _, _ in KINDS)
  lines = ["live at the peak of the step, by kind (XLA's buffer assignment):"]
  for kind, what, _ in KINDS:
    if kinds.get(kind):
      lines.append(f"  {kind:<{width}} {kinds[kind] / GiB:6.2f} GiB  {what}")
  lines.append(f"  {'total':<{width}} {sum(kinds.values()) / GiB:6.2f} GiB")
  if temp_bytes is not None:
    lines.append(f"  (XLA's temporary arena: {temp_bytes / GiB:.2f} GiB, fragmentation included)")
  return "\n".join(lines)
