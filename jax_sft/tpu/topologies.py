"""TPU slices by their Cloud names (v5e-8, v4-8, ...): libtpu topology, HBM and peak FLOP/s.

`devices(name)` returns libtpu's virtual devices for a slice, so a train step can be
compiled for a TPU this machine does not have (jax.experimental.topologies, as MaxText's
train_compile.py does). Chip figures are Google's published per-chip specs
(cloud.google.com/tpu/docs/system-architecture-tpu-vm and the v4/v5e/v5p/v6e pages).
"""

from __future__ import annotations

import dataclasses
import os

from jax.experimental import topologies as jax_topologies

GiB = 2**30

INSTALL_HINT = ('libtpu is not installed, so nothing can be compiled for a TPU here. '
                'Install the TPU extra:  pip install -e ".[tpu]"   (or: pip install "jax[tpu]")')


class LibtpuMissing(RuntimeError):
  """libtpu (the TPU compiler) is not importable; the message says how to install it."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation: HBM and dense bf16 peak per chip, and the Cloud accelerator prefix."""

  generation: str  # libtpu's prefix: v5e, v4, ...
  hbm_gib: float
  peak_bf16_tflops: float
  cores_named: int  # Cloud names count TensorCores (v4-8 = 4 chips) for these generations: 2


CHIPS = {
    "v2": Chip("v2", 8.0, 45.0, 2),
    "v3": Chip("v3", 32.0, 123.0, 2),
    "v4": Chip("v4", 32.0, 275.0, 2),
    "v5e": Chip("v5e", 16.0, 197.0, 1),
    "v5p": Chip("v5p", 95.0, 459.0, 2),
    "v6e": Chip("v6e", 32.0, 918.0, 1),
}


@dataclasses.dataclass(frozen=True)
class Topology:
  """A TPU slice: its Cloud name, libtpu's topology string, and host layout."""

  name: str  # Cloud accelerator type, e.g. "v5e-8"
  chip: Chip
  libtpu_name: str  # e.g. "v5e:2x4"
  chips_per_host_bounds: tuple[int, int, int]
  num_chips: int

  @property
  def num_hosts(self) -> int:
    b = self.chips_per_host_bounds
    return max(1, self.num_chips // (b[0] * b[1] * b[2]))

  @property
  def hbm_bytes_per_chip(self) -> int:
    return int(self.chip.hbm_gib * GiB)

  @property
  def peak_flops_per_chip(self) -> float:
    return self.chip.peak_bf16_tflops * 1e12


def _t(name: str, libtpu_name: str, bounds: tuple[int, int, int], chips: int) -> Topology:
  return Topology(name, CHIPS[name.split("-")[0]], libtpu_name, bounds, chips)


TOPOLOGIES = {t.name: t for t in [
    # Single host (one process).
    _t("v5e-1", "v5e:1x1", (1, 1, 1), 1),
    _t("v5e-4", "v5e:2x2", (2, 2, 1), 4),
    _t("v5e-8", "v5e:2x4", (2, 4, 1), 8),  # Kaggle's TPU
    _t("v6e-4", "v6e:2x2", (2, 2, 1), 4),
    _t("v6e-8", "v6e:2x4", (2, 4, 1), 8),
    _t("v4-8", "v4:2x2x1", (2, 2, 1), 4),
    _t("v5p-8", "v5p:2x2x1", (2, 2, 1), 4),
    _t("v3-8", "v3:2x2", (2, 2, 1), 4),
    _t("v2-8", "v2:2x2", (2, 2, 1), 4),
    # Multi-host pod slices (one process per host, jax.distributed).
    _t("v5e-16", "v5e:4x4", (2, 4, 1), 16),
    _t("v5e-32", "v5e:4x8", (2, 4, 1), 32),
    _t("v6e-16", "v6e:4x4", (2, 4, 1), 16),
    _t("v4-16", "v4:2x2x2", (2, 2, 1), 8),
    _t("v5p-16", "v5p:2x2x2", (2, 2, 1), 8),
    _t("v3-32", "v3:4x4", (2, 2, 1), 16),
]}


def get(name: str) -> Topology:
  """The slice called `name` (e.g. "v5e-8"); raises ValueError listing the known names."""
  if name in TOPOLOGIES:
    return TOPOLOGIES[name]
  raise ValueError(f"--topology {name!r} is not one of: {', '.join(TOPOLOGIES)}")


def libtpu_available() -> bool:
  """Whether libtpu (the TPU compiler) can be imported."""
  try:
    # Optional (the `tpu` extra), so imported only to ask whether it is there.
    import libtpu  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def devices(topology: Topology) -> list:
  """libtpu's virtual devices for the slice (no TPU needed). Raises LibtpuMissing without libtpu."""
  if not libtpu_available():
    raise LibtpuMissing(INSTALL_HINT)
  # Stops libtpu asking a GCE metadata server that a CPU machine does not have, and lets
  # several processes (parallel tests, a plan beside a plan) load it: we only compile.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  desc = jax_topologies.get_topology_desc(
      platform="tpu", topology_name=topology.libtpu_name,
      chips_per_host_bounds=topology.chips_per_host_bounds)
  return list(desc.devices)
