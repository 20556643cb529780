"""The architecture holds: layers import only downward, no import circles, imports at the
top of files, files small enough to read, no development-machine paths in the package.

See docs/architecture.md; the layers contract is in pyproject.toml ([tool.importlinter]).
"""

import ast
import os
import shutil
import subprocess
import sys

import grimp
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "jax_sft")
MAX_LINES = 400


def _py_files(*roots):
  for root in roots:
    for dirpath, _, files in os.walk(os.path.join(REPO, root)):
      for f in files:
        if f.endswith(".py"):
          yield os.path.join(dirpath, f)


def test_layers_contract_is_kept():
  exe = shutil.which("lint-imports") or os.path.join(os.path.dirname(sys.executable),
                                                     "lint-imports")
  proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
  assert "1 kept, 0 broken" in proc.stdout


def test_no_import_circles():
  graph = grimp.build_graph("jax_sft")
  circles = []
  for module in sorted(graph.modules):
    for imported in graph.find_modules_directly_imported_by(module):
      if imported != module and graph.chain_exists(importer=imported, imported=module):
        circles.append(f"{module} -> {imported} -> ... -> {module}")
  assert not circles, "\n".join(circles[:10])


def _local_imports(path):
  tree = ast.parse(open(path, encoding="utf-8").read())
  lines = open(path, encoding="utf-8").read().splitlines()
  for fn in ast.walk(tree):
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for node in ast.walk(fn):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
          yield node, lines[node.lineno - 1]


def test_imports_sit_at_the_top_of_files():
  # A function-local import is allowed only for an optional heavy dependency, with its
  # reason on the line (or the line above); never for one of our own modules.
  bad = []
  for path in _py_files("jax_sft"):
    src = open(path, encoding="utf-8").read().splitlines()
    for node, line in _local_imports(path):
      module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
      reason = "#" in line or src[node.lineno - 2].strip().startswith("#")
      if (module or "").startswith("jax_sft") or not reason:
        bad.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {line.strip()}")
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("root", ["jax_sft", "bench", "tools", "tpu_scripts", "tests"])
def test_files_are_short_enough_to_read(root):
  long = [f"{os.path.relpath(p, REPO)}: {n} lines" for p in _py_files(root)
          if (n := len(open(p, encoding="utf-8").read().splitlines())) > MAX_LINES]
  assert not long, "\n".join(long)


def test_no_development_machine_paths_in_the_package():
  bad = [os.path.relpath(p, REPO) for p in _py_files("jax_sft", "tools", "bench")
         if any(s in open(p, encoding="utf-8").read() for s in ("/work/", "/root/", "/home/"))]
  assert not bad, bad
