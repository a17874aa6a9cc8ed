#!/usr/bin/env bash
# CPU-scale sweep (about 80 minutes on a 2-core CPU): a 10k-image CIFAR-10 subset, ResNet-9 at width
# 0.25, 500 corrupted samples per kind, discovery 0.1/0.5/1.0, seed 0, REM and every baseline.
#
#   benchmarks/sweep_cpu.sh OUT_DIR          # e.g. runs/sweep-cpu; rerun the same line to resume
#
# Environment (all optional): SOURCE (the cifar10-jpeg.tar.gz; default ../shared/data/cifar10/...),
# CACHE_DIR (extracted subset; default ${XDG_CACHE_HOME:-~/.cache}/remcli/cifar10-10k),
# METHODS, SEEDS, DEVICE (default cpu), REMCLI (default: remcli on PATH, else .venv/bin/remcli),
# PYTHON (default python3; the data preparation needs only the standard library), DRY_RUN=1
# (prepare the data, check every option and print what would run; train nothing).
#
# Budgets scale with the 10-epoch training run as the paper's do with its ~41 epochs: REM 3
# iterations (paper 10), the epoch-budgeted baselines 2 epochs (paper ~10), retrain the checkpoint's
# own 10-epoch recipe. Measured per kind x rate (docs/results-cpu.md): retrain ~100 s, REM ~95 s,
# Potion ~40 s, SCRUB ~27 s, finetune ~20 s, SSD ~9 s, GA/NPO < 1 s, plus an evaluation per cell.
# Every other setting is the method's default.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/_sweep_common.sh "$@"
CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remcli/cifar10-10k}
METHODS=${METHODS:-rem,retrain,finetune,ga,npo,scrub,ssd,potion,badteacher,salun,neggrad+,cf-k,eu-k}
SEEDS=${SEEDS:-0}
DEVICE=${DEVICE:-cpu}
TRAIN_EPOCHS=10

"$PYTHON" benchmarks/prepare_cifar_subset.py --source "$SOURCE" --per-class 1000 --test-per-class 200 --out "$CACHE_DIR"

# per-method budgets, kept only where the method has that setting (see benchmarks/sweep_args.py)
methods_json=$("$REMCLI" methods --json -)
mapfile -t METHOD_ARGS < <(printf '%s' "$methods_json" | "$PYTHON" benchmarks/sweep_args.py --methods "$METHODS" \
  rem.epochs=3 finetune.epochs=2 scrub.epochs=2 salun.epochs=2 neggrad+.epochs=2 cf-k.epochs=2 eu-k.epochs=2)
[ ${#METHOD_ARGS[@]} -gt 0 ] || exit 2

cmd=("$REMCLI" sweep --data "imagefolder:$CACHE_DIR" --arch resnet9 --width 0.25 --count 500
     --kinds poison,interclass,label-noise --discovery 0.1,0.5,1.0 --seeds "$SEEDS"
     --train-epochs $TRAIN_EPOCHS --train-batch-size 512 "${METHOD_ARGS[@]}" --device "$DEVICE" --out "$OUT")
if [ "${DRY_RUN:-0}" = 1 ]; then cmd+=(--dry-run); fi
echo "command: $(printf '%q ' "${cmd[@]}")"
status=0
"${cmd[@]}" || status=$?
if [ "${DRY_RUN:-0}" != 1 ] && [ -f "$OUT/sweep.json" ]; then
  printf '%q ' "${cmd[@]}" >> "$OUT/commands.sh"; echo >> "$OUT/commands.sh"
fi
echo "summary: $OUT/summary.md, heatmaps: $OUT/heatmaps/, rows: $OUT/results.csv"
exit $status
