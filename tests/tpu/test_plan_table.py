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
                      "gemma2_2b_full_s1_2048": {"error": "boom", "row": "x"}})
  lines = table.splitlines()
  assert "| gemma2_2b_lora_s1_2048 | lora | 16 x 2048 | 1.00 / 3.00 / **5.00** | fits | 20.0 |" \
      " 50,000 | 0.50 / 1.25 | 6.8 |" in lines
  assert any("plan failed: boom" in line for line in lines)
  doc = tmp_path / "tpu.md"
  doc.write_text(f"intro\n{mod.START}\nold table\n{mod.END}\noutro\n")
  monkeypatch.setattr(mod, "DOC", str(doc))
  mod.write_doc(table)
  text = doc.read_text()
  assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
  assert table in text
