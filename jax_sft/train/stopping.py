"""When to stop early: SIGTERM/SIGINT and the session's time budget.

A signal only sets a flag; the loop finishes the step it is in, checkpoints and exits 0.
The budget stops the loop once the next step plus a final save would no longer fit.
"""

from __future__ import annotations

import re
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
  """Seconds in "8h30m", "90m", "45s", "1d2h" or a bare number of seconds."""
  text = str(text).strip().lower()
  if re.fullmatch(r"\d+(\.\d+)?", text):
    return float(text)
  parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
  if not parts or "".join(a + b for a, b in parts) != text:
    raise ValueError(f"train.time_budget={text!r} is not a duration like 8h30m, 90m or 45s")
  return sum(float(n) * _UNITS[u] for n, u in parts)


class StopFlags:
  """Catches SIGTERM/SIGINT and tracks the time budget; `should_stop()` says why."""

  def __init__(self, time_budget: str | None = None, start: float | None = None):
    self.start = time.monotonic() if start is None else start
    self.budget_s = parse_duration(time_budget) if time_budget else None
    self.signal_name: str | None = None
    self._old = {}

  def install(self) -> "StopFlags":
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._old[sig] = signal.signal(sig, self._handle)
    return self

  def uninstall(self) -> None:
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}

  def _handle(self, signum, frame):
    if self.signal_name is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C means now
    self.signal_name = signal.Signals(signum).name

  def elapsed(self) -> float:
    return time.monotonic() - self.start

  def left(self) -> float | None:
    """Seconds of budget left, or None without a budget."""
    return None if self.budget_s is None else self.budget_s - self.elapsed()

  def should_stop(self, step_s: float, save_s: float) -> str | None:
    """A reason to stop before the next step, or None. Agreed by all processes."""
    reason = None
    if self.signal_name:
      reason = f"received {self.signal_name}"
    elif self.budget_s is not None and self.left() < step_s + save_s:
      reason = f"time budget {self.budget_s:.0f}s nearly spent ({self.elapsed():.0f}s used)"
    if jax.process_count() > 1:
      stop = multihost_utils.process_allgather(np.int32(reason is not None))
      if np.any(stop) and reason is None:
        reason = "another process is stopping"
    return reason
