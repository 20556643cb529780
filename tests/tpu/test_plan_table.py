"""tpu_scripts/plan_table.py renders plan results into docs/tpu.md between its markers."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
  spec = importlib.util.spec_from_file_location(
      "plan_table", os.path.join(REPO, "tpu_scripts", "plan_table.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_render_and_write_between_markers(tmp_path, monkeypatch):
  mod = _module()
  row = {"mode": "lora", "batch_size": 16, "seq_len": 2048, "argument_bytes": 2**30,
         "temp_bytes": 3 * 2**30, "total_bytes": 5 * 2**30, "fits": True, "flops": 2e13,
         "tokens_per_s": 50000.0, "hours_per_epoch": 0.5, "epochs_in_budget": 17.0}
  table = mod.render({"gemma2_2b_lora_s1_2048": row,
                      "gemma3_270m_lora_s1_2048": dict(row, largest_batch=256),
                      "gemma2_2b_full_s1_2048": {"error": "boom", "row": "x"}})
  lines = table.splitlines()
  assert "| gemma2_2b_lora_s1_2048 | lora | 16 x 2048 | 1.00 / 3.00 / **5.00** | fits | 20.0 |" \
      " 50,000 | 0.50 / 1.25 | 6.8 | not searched |" in lines
  assert any(line.startswith("| gemma3_270m_lora_s1_2048 |") and line.endswith("| 256 |")
             for line in lines)
  assert any("plan failed: boom" in line for line in lines)
  doc = tmp_path / "tpu.md"
  doc.write_text(f"intro\n{mod.START}\nold table\n{mod.END}\noutro\n")
  monkeypatch.setattr(mod, "DOC", str(doc))
  mod.write_doc(table)
  text = doc.read_text()
  assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
  assert table in text


def test_find_batch_row_keeps_the_configs_batch_and_the_largest_that_fits(tmp_path):
  """compile_row with --find-batch: the search's first plan (the config's own batch) is the
  row, and largest_batch is the largest batch among the plans that fit."""
  mod = _module()
  fake = tmp_path / "fake_cli.py"
  fake.write_text(
      "import json, sys\n"
      "assert '--find-batch' in sys.argv, sys.argv\n"
      "for b, fits in [(16, True), (32, True), (64, False), (48, True), (56, False)]:\n"
      "  print(json.dumps({'batch_size': b, 'fits': fits}))\n")
  row = mod.compile_row("r", "c.yaml", [], "v5e-8", [str(fake)], find_batch=True)
  assert row["batch_size"] == 16 and row["largest_batch"] == 48
  plain = tmp_path / "plain_cli.py"
  plain.write_text("import json\nprint(json.dumps({'batch_size': 16, 'fits': False}))\n")
  assert "largest_batch" not in mod.compile_row("r", "c.yaml", [], "v5e-8", [str(plain)])


def test_rows_saved_by_two_invocations_are_both_kept(tmp_path, monkeypatch):
  """Two invocations compiling different rows at once: each save re-reads the file, so the
  row the other one saved meanwhile is kept, and the file stays in ROWS order."""
  mod = _module()
  monkeypatch.setattr(mod, "RESULTS", str(tmp_path / "plan.jsonl"))
  first, second = mod.ROWS[3][0], mod.ROWS[1][0]
  mod.save_row({"row": first, "batch_size": 16})
  everything = mod.save_row({"row": second, "batch_size": 8})
  assert set(everything) == {first, second}
  assert [r["row"] for r in mod.load_results().values()] == [second, first]
  mod.save_row({"row": first, "batch_size": 32})  # a recompile replaces its row
  assert mod.load_results()[first]["batch_size"] == 32
  assert mod.load_results()[second]["batch_size"] == 8


def test_a_killed_compile_is_named_as_such(tmp_path):
  """A compile the OOM killer stops leaves only libtpu's warnings on stderr: the row says it
  was killed instead of quoting the last warning."""
  mod = _module()
  fake = tmp_path / "killed_cli.py"
  fake.write_text("import os, signal, sys\n"
                  "print('W0000 libtpu_init_utils.cc:327 some warning', file=sys.stderr)\n"
                  "sys.stderr.flush()\n"
                  "os.kill(os.getpid(), signal.SIGKILL)\n")
  row = mod.compile_row("r", "c.yaml", [], "v5e-8", [str(fake)])
  assert row["error"].startswith("killed by signal 9"), row
  failing = tmp_path / "failing_cli.py"
  failing.write_text("import sys\nsys.exit('c.yaml: train.batch_size must be positive')\n")
  assert mod.compile_row("r", "c.yaml", [], "v5e-8", [str(failing)])["error"] == \
      "c.yaml: train.batch_size must be positive"
