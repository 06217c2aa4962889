#!/usr/bin/env bash
# Run every paper experiment (docs/paper.md, issue 25) in the background, one after another, then render the page.
# Resumable: run it again after an interruption; finished stages are skipped, cut-short ones continue from their
# checkpoints. One at a time, with THREADS threads each (default 2).
#
#   bench/paper/run_all.sh [WORK_DIR]        # default runs/paper; logs: WORK_DIR/run_all.log, WORK_DIR/exp*/log.txt
#   bench/paper/run_all.sh --measure         # only time a few steps of every arm (minutes), then render the header
#
# Experiment 5 needs the original in the benchmark environment: `make bench-venv` first (BENCH_PY below).
# A smaller budget: EXPn_ARGS="..." adds options to experiment n, e.g.
#   EXP2_ARGS="--seeds 0 --factors 2 4 8" EXP3_ARGS="--vqgan-steps 1500 --gpt-steps 1500" bench/paper/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
MEASURE=""
if [ "${1:-}" = "--measure" ]; then MEASURE="--measure 3"; shift; fi
W=${1:-runs/paper}
THREADS=${THREADS:-2}
PY=${PY:-.venv/bin/python}
BENCH_PY=${BENCH_PY:-.bench-venv/bin/python}
mkdir -p "$W"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=$THREADS

run() {
  local py=$1 name=$2; shift 2
  if [ -z "$MEASURE" ] && [ -f "$W/$name.done" ]; then echo "== $name: done"; return; fi
  echo "== $name: $(date -u +%H:%M) start"
  "$py" "bench/paper/$name.py" --work "$W" --threads "$THREADS" $MEASURE "$@"
  [ -n "$MEASURE" ] || touch "$W/$name.done"
  echo "== $name: $(date -u +%H:%M) end"
}

all() {
  run "$PY" exp1_attention ${EXP1_ARGS:-}
  run "$PY" exp2_vocab ${EXP2_ARGS:-}
  run "$PY" exp3_first_stage ${EXP3_ARGS:-}
  run "$PY" exp4_sampling ${EXP4_ARGS:-}
  if [ -x "$BENCH_PY" ]; then run "$BENCH_PY" exp5_original ${EXP5_ARGS:-}
  else echo "== exp5_original: skipped ($BENCH_PY missing: make bench-venv)"; fi
  "$PY" bench/paper/render.py
}

if [ -n "$MEASURE" ]; then all; exit; fi
VARS="W='$W' THREADS='$THREADS' PY='$PY' BENCH_PY='$BENCH_PY' MEASURE=''"
for n in 1 2 3 4 5; do v="EXP${n}_ARGS"; VARS="$VARS $v='${!v:-}'"; done
nohup bash -c "set -euo pipefail; $(declare -f run all); $VARS; all" \
    >> "$W/run_all.log" 2>&1 &
echo "started in the background (pid $!): tail -f $W/run_all.log"
