"""`jax-sft prepare CONFIG [key=value ...]`: build the tokenized data mix."""

from __future__ import annotations

import argparse
import logging

from jax_sft import config as config_lib
from jax_sft.data.sources import DataError
from jax_sft.train import data_feed


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("config", help="YAML config file (its `data:` section is used)")
  parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. seed=1")
  parser.add_argument("--force", action="store_true", help="rebuild even if a matching result exists")


def run(args: argparse.Namespace) -> int:
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  cfg = config_lib.load(args.config, args.overrides)
  try:
    local, bucket = data_feed.localize(cfg)  # gs:// output: prepared locally, copied up
    m = data_feed.prepare(local, publish_to=bucket, force=args.force)
  except (DataError, ValueError, FileNotFoundError) as e:
    logging.error("%s", e)
    return 1
  print(f"{cfg.data.output_dir}: train {m['splits']['train']['examples']} examples "
        f"({m['splits']['train']['tokens']} tokens), eval {m['splits']['eval']['examples']}")
  for name, s in m["sources"].items():
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none"
    print(f"  {name}: read {s['read']}, kept {s['kept']} (asked {s['asked'] or 'all'}), "
          f"truncated {s['truncated']}, median {s['tokens'].get('p50', 0):.0f} tokens; dropped: {dropped}")
  for note in m["notes"]:
    print(f"  note: {note}")
  print(f"  manifest: {cfg.data.output_dir}/manifest.json  content hash {m['content_hash']}")
  return 0
