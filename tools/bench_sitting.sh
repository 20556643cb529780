#!/usr/bin/env bash
# One side-by-side sitting on bench-small (docs/training.md): ours, KerasHub and Tunix,
# full then LoRA, alternating, ROUNDS times; one JSON line per run in OUT.
#   TUNIX_PY=/path/to/tunix/venv/bin/python tools/bench_sitting.sh [ROUNDS] [OUT]
set -u
ROUNDS=${1:-3}
OUT=${2:-/tmp/bench_sitting.jsonl}
PY=${PY:-.venv/bin/python}
TUNIX_PY=${TUNIX_PY:-/tmp/tunix_venv/bin/python}
PEERS=$(dirname "$0")/../../shared/bench
: > "$OUT"
run() {  # name mode command...
  local name=$1 mode=$2; shift 2
  local line
  line=$("$@" 2>/dev/null | tail -1)
  echo "{\"round\": $r, \"system\": \"$name\", \"mode\": \"$mode\", \"load\": \"$(cut -d' ' -f1 /proc/loadavg)\", \"result\": ${line:-null}}" >> "$OUT"
}
for r in $(seq 1 "$ROUNDS"); do
  run jax_sft full "$PY" bench/bench_train.py --steps 8 --mode full
  run keras full "$PY" "$PEERS/peer_keras.py" --steps 8
  run tunix full "$TUNIX_PY" "$PEERS/peer_tunix.py" --steps 8
  run jax_sft lora "$PY" bench/bench_train.py --steps 8 --mode lora
  run keras lora "$PY" "$PEERS/peer_keras.py" --steps 8 --lora --lora-targets all
  run tunix lora "$TUNIX_PY" "$PEERS/peer_tunix.py" --steps 8 --lora
done
