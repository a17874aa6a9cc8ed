#!/usr/bin/env bash
# Paper-scale sweep for one GPU: full CIFAR-10 (50k/10k, from the JPEG tarball), ResNet-9 at full
# width trained 41 epochs (the paper's ~4,000 steps at batch 512), 1,000 corrupted samples per
# kind, all three kinds, discovery 0.1..1.0, the paper's methods. The proportions are the paper's
# and the CPU profile's: 1,000 = 2 % of 50,000, the interclass swap 500 + 500 = 10 % of each class;
# summary.md carries the same memorisation check (corrupted-label accuracy of every model, < 0.9
# flagged), so the numbers sit beside the paper's Table 1 (REM 73.40, Retrained 48.52, NPO (ETD)
# 67.10, Potion 36.16 utility x healed).
#
#   benchmarks/sweep_gpu.sh OUT_DIR                    # rerun the same line to resume
#   BUDGET_MINUTES=120 benchmarks/sweep_gpu.sh OUT_DIR # stop after 2 hours; rerun later to go on
#   TINY=1 benchmarks/sweep_gpu.sh OUT_DIR             # the same script at toy size on CPU (~1 min)
#
# Most informative cells first: the same --out is swept in phases, each resuming the last:
#   1. first seed, discovery 0.1,0.5,1.0      2. first seed, all ten rates
#   3. all SEEDS, discovery 0.1,0.5,1.0       4. all SEEDS, all ten rates
# (phases 3-4 only when SEEDS lists more than one seed). With BUDGET_MINUTES each phase gets
# the time left and is stopped (SIGTERM: finished cells are kept) when it runs out; the report
# is then rebuilt from what finished.
#
# Environment (all optional): SOURCE (cifar10-jpeg.tar.gz; default ../shared/data/cifar10/...),
# CACHE_DIR (extracted data; default ${XDG_CACHE_HOME:-~/.cache}/remcli/cifar10-full, or
# cifar10-tiny with TINY=1), METHODS, SEEDS (default 0), DEVICE (default auto; cpu with TINY=1),
# BUDGET_MINUTES, REMCLI (default: remcli on PATH, else .venv/bin/remcli), PYTHON (default python3),
# DRY_RUN=1 (prepare the data, check every option and print what each phase would run), WORKERS=N (N worker
# processes share the folder, e.g. 4 on one large GPU; add --devices through the command for several GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/_sweep_common.sh "$@"
METHODS=${METHODS:-rem,retrain,finetune,potion,npo,scrub,badteacher,ga,ssd,salun,neggrad+,cf-k,eu-k}
SEEDS=${SEEDS:-0}
FIRST_SEED=${SEEDS%%,*}

if [ "${TINY:-0}" = 1 ]; then
  CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remcli/cifar10-tiny}
  DEVICE=${DEVICE:-cpu}
  PER_CLASS=30; TEST_PER_CLASS=10
  SIZE=(--width 0.125 --count 40 --train-epochs 1 --train-batch-size 64)
  FIRST_RATES=1.0; ALL_RATES=0.5,1.0
  BUDGETS=('*.epochs=1' '*.batch_size=64' '*.flush_max_epochs=2' '*.max_epochs=2' '*.max_tries=5' '*.max_steps=5')
else
  CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remcli/cifar10-full}
  DEVICE=${DEVICE:-auto}
  PER_CLASS=5000; TEST_PER_CLASS=1000
  SIZE=(--width 1.0 --count 1000 --train-epochs 41 --train-batch-size 512)
  FIRST_RATES=0.1,0.5,1.0; ALL_RATES=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0
  BUDGETS=()  # every method at its default budget (retrain: the checkpoint's own training run)
fi

"$PYTHON" benchmarks/prepare_cifar_subset.py --source "$SOURCE" --per-class $PER_CLASS --test-per-class $TEST_PER_CLASS --out "$CACHE_DIR"

methods_json=$("$REMCLI" methods --json -)
mapfile -t METHOD_ARGS < <(printf '%s' "$methods_json" | "$PYTHON" benchmarks/sweep_args.py --methods "$METHODS" ${BUDGETS[@]+"${BUDGETS[@]}"})
[ ${#METHOD_ARGS[@]} -gt 0 ] || exit 2

run_phase() {  # run_phase SEEDS RATES
  local cmd=("$REMCLI" sweep --data "imagefolder:$CACHE_DIR" --arch resnet9 "${SIZE[@]}" --kinds poison,interclass,label-noise
             --discovery "$2" --seeds "$1" "${METHOD_ARGS[@]}" --device "$DEVICE" --out "$OUT")
  if [ "${DRY_RUN:-0}" = 1 ]; then cmd+=(--dry-run); elif [ "${WORKERS:-1}" -gt 1 ]; then cmd+=(--workers "$WORKERS"); fi
  run_sweep_command "phase seeds=$1 rates=$2" "${cmd[@]}"
}

if run_phase "$FIRST_SEED" "$FIRST_RATES" && run_phase "$FIRST_SEED" "$ALL_RATES" \
   && { [ "$SEEDS" = "$FIRST_SEED" ] || { run_phase "$SEEDS" "$FIRST_RATES" && run_phase "$SEEDS" "$ALL_RATES"; }; }; then
  :
else
  "$REMCLI" sweep --out "$OUT" --report-only   # the budget ran out: rebuild the report from what finished
fi
echo "summary: $OUT/summary.md, heatmaps: $OUT/heatmaps/, rows: $OUT/results.csv"
exit $status
