#!/usr/bin/env bash
# Train jax_sft on a Cloud TPU VM slice (single- or multi-host), end to end:
#   create -> setup (every worker) -> train (every worker at once, jax.distributed)
#   -> export -> fetch -> delete.
#
# Usage:
#   tpu_scripts/cloud_tpu.sh [options] COMMAND...
# COMMAND: create | setup | train | export | fetch | delete | all (= every step in order)
# Options (flags win over the environment variables in brackets):
#   --name NAME            TPU VM / queued-resource name            [TPU_NAME]   (required)
#   --zone ZONE            e.g. us-west4-a                          [TPU_ZONE]   (required)
#   --project PROJECT      gcloud project (default: gcloud's own)   [TPU_PROJECT]
#   --accelerator TYPE     jax_sft slice name: v5e-8, v5e-16, v4-8, v6e-8, v5p-8, v3-8 ...  (default v5e-8)
#   --config FILE          run config, relative to the repo          (required for train)
#   --bucket gs://B/PATH   run directory: checkpoints, metrics, export go here (Orbax writes gs:// directly)
#   --model PATH           base weights (gs:// or a path on the workers), passed as a config override
#   --time-budget 8h30m    stop cleanly with a final checkpoint before this
#   --queued               create through queued resources (waits until ACTIVE) instead of tpu-vm create
#   --spot                 spot capacity (preemptible; resume with `train --resume`)
#   --resume               continue the run in --bucket from its last checkpoint
#   --out DIR              where `fetch` puts the exported model (default ./export_NAME)
#   --dry-run              print every command instead of running it
#   -h | --help
# Extra `key.path=value` arguments after `--` are config overrides for `jax-sft train`.
#
# Example (a 2-host v5e-16 with spot capacity):
#   tpu_scripts/cloud_tpu.sh --name sft1 --zone us-west4-a --accelerator v5e-16 --queued --spot \
#     --config configs/gemma2_2b_full_s1_2048.yaml --bucket gs://my-bucket/sft1 all
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${TPU_NAME:-}"
ZONE="${TPU_ZONE:-}"
PROJECT="${TPU_PROJECT:-}"
ACCEL="v5e-8"
CONFIG=""
BUCKET=""
MODEL=""
TIME_BUDGET=""
QUEUED=0
SPOT=0
RESUME=0
OUT=""
DRY_RUN=0
COMMANDS=()
OVERRIDES=()

die() { echo "cloud_tpu.sh: $*" >&2; exit 2; }

# Prints the command, quoted so it can be pasted; runs it unless --dry-run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ "$DRY_RUN" == 0 ]]; then "$@"; fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --accelerator) ACCEL="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --bucket) BUCKET="${2%/}"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --time-budget) TIME_BUDGET="$2"; shift 2 ;;
    --queued) QUEUED=1; shift ;;
    --spot) SPOT=1; shift ;;
    --resume) RESUME=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) COMMANDS+=("$1"); shift ;;
  esac
done

[[ ${#COMMANDS[@]} -gt 0 ]] || die "no COMMAND given (create, setup, train, export, fetch, delete or all)"
[[ -n "$NAME" ]] || die "--name (or TPU_NAME) is required"
[[ -n "$ZONE" ]] || die "--zone (or TPU_ZONE) is required"
OUT="${OUT:-./export_${NAME}}"

# Cloud accelerator type and TPU VM runtime image per generation
# (cloud.google.com/tpu/docs/runtimes).
GEN="${ACCEL%%-*}"
SIZE="${ACCEL#*-}"
case "$GEN" in
  v5e) ACCEL_TYPE="v5litepod-${SIZE}"; RUNTIME="v2-alpha-tpuv5-lite" ;;
  v6e) ACCEL_TYPE="v6e-${SIZE}"; RUNTIME="v2-alpha-tpuv6e" ;;
  v5p) ACCEL_TYPE="v5p-${SIZE}"; RUNTIME="v2-alpha-tpuv5" ;;
  v4|v3|v2) ACCEL_TYPE="${ACCEL}"; RUNTIME="tpu-ubuntu2204-base" ;;
  *) die "--accelerator $ACCEL: unknown generation $GEN (v2, v3, v4, v5e, v5p, v6e)" ;;
esac

GCLOUD_COMMON=(--zone "$ZONE")
if [[ -n "$PROJECT" ]]; then GCLOUD_COMMON+=(--project "$PROJECT"); fi

# Runs a shell command on workers ("all" or an index) over gcloud's ssh.
on_workers() {
  local workers="$1" command="$2"
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_COMMON[@]}" --worker="$workers" --command="$command"
}

# Single quotes on purpose: $HOME expands on the worker, not here.
# shellcheck disable=SC2016
ENV_SETUP='set -e; . "$HOME/venv/bin/activate"; cd "$HOME/jax_sft"'

do_create() {
  local spot=()
  if [[ "$SPOT" == 1 ]]; then spot=(--spot); fi
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources create "$NAME" "${GCLOUD_COMMON[@]}" --node-id "$NAME" \
      --accelerator-type "$ACCEL_TYPE" --runtime-version "$RUNTIME" "${spot[@]}"
    wait_active
  else
    run gcloud compute tpus tpu-vm create "$NAME" "${GCLOUD_COMMON[@]}" \
      --accelerator-type "$ACCEL_TYPE" --version "$RUNTIME" "${spot[@]}"
  fi
}

# Polls the queued resource until its node exists; capacity can take a while.
wait_active() {
  local state
  for _ in $(seq 1 720); do
    state="$(run gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_COMMON[@]}" \
      --format='value(state.state)' | tail -n 1)"
    if [[ "$DRY_RUN" == 1 ]]; then echo "$state"; return 0; fi
    case "$state" in
      ACTIVE) return 0 ;;
      FAILED|SUSPENDED) die "queued resource $NAME is $state" ;;
    esac
    sleep 30
  done
  die "queued resource $NAME did not become ACTIVE within 6 hours"
}

do_setup() {
  local tarball
  tarball="$(mktemp -d)/jax_sft.tar.gz"
  # The working tree as it is (uncommitted edits included), without venvs and caches (the
  # compilation cache of configs/base.yaml, jax_cache/, grows by GBs; each worker fills its own).
  run tar -C "$REPO_DIR" --exclude=.venv --exclude=.git --exclude=runs --exclude=data_cache \
    --exclude=jax_cache --exclude=.jax_cache --exclude=__pycache__ -czf "$tarball" .
  run gcloud compute tpus tpu-vm scp "$tarball" "$NAME:jax_sft.tar.gz" "${GCLOUD_COMMON[@]}" --worker=all
  # shellcheck disable=SC2016
  on_workers all 'set -e; rm -rf "$HOME/jax_sft"; mkdir -p "$HOME/jax_sft"; tar -xzf "$HOME/jax_sft.tar.gz" -C "$HOME/jax_sft"; python3 -m venv "$HOME/venv"; . "$HOME/venv/bin/activate"; pip install -q --upgrade pip; pip install -q -e "$HOME/jax_sft[tpu]"'
}

train_args() {
  [[ -n "$CONFIG" ]] || die "--config is required for train"
  [[ "$BUCKET" == gs://* ]] || die "--bucket must be a gs:// path (every worker writes its shards of each checkpoint there)"
  local args=(jax-sft train "$CONFIG")
  if [[ "$RESUME" == 1 ]]; then args+=(--resume); fi
  if [[ -n "$TIME_BUDGET" ]]; then args+=(--time-budget "$TIME_BUDGET"); fi
  args+=("run_dir=$BUCKET" "checkpoint.compilation_cache_dir=$BUCKET/jax_cache")
  if [[ -n "$MODEL" ]]; then args+=("model.init_from=$MODEL"); fi
  args+=("${OVERRIDES[@]}")
  printf '%q ' "${args[@]}"
}

do_train() {
  local cmd
  cmd="$(train_args)"
  # Every worker prepares the same data (deterministic, content-hashed) on its own disk,
  # then all of them start together: jax.distributed finds its peers from the TPU metadata.
  on_workers all "$ENV_SETUP; jax-sft prepare $(printf '%q' "$CONFIG") && $cmd"
}

do_export() {
  [[ "$BUCKET" == gs://* ]] || die "--bucket (gs://...) is required for export"
  on_workers 0 "$ENV_SETUP; jax-sft export $(printf '%q' "$BUCKET") --format safetensors --out $(printf '%q' "$BUCKET/export")"
}

do_fetch() {
  [[ "$BUCKET" == gs://* ]] || die "--bucket (gs://...) is required for fetch"
  run mkdir -p "$OUT"
  run gcloud storage cp --recursive "$BUCKET/export" "$OUT"
}

do_delete() {
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$NAME" "${GCLOUD_COMMON[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$NAME" "${GCLOUD_COMMON[@]}" --quiet
  fi
}

for c in "${COMMANDS[@]}"; do
  case "$c" in
    create) do_create ;;
    setup) do_setup ;;
    train) do_train ;;
    export) do_export ;;
    fetch) do_fetch ;;
    delete) do_delete ;;
    all)
      # A slice bills by the hour: delete it however the run ends.
      trap do_delete EXIT
      do_create; do_setup; do_train; do_export; do_fetch ;;
    *) die "unknown COMMAND $c (create, setup, train, export, fetch, delete, all)" ;;
  esac
done
