#!/usr/bin/env bash
# The fine-tuned CPU profile (issue 25): where practitioners work. One ResNet-9 is pretrained on
# clean CIFAR-10 images; every model of the sweep is fine-tuned from it (`remcli sweep --init`) on a
# small, disjoint set that carries the corruption. Results: docs/results-finetuned.md.
#
#   benchmarks/sweep_finetuned.sh OUT_DIR          # e.g. runs/sweep-finetuned; rerun the same line to resume
#   TINY=1 benchmarks/sweep_finetuned.sh OUT_DIR   # the same steps at toy size, two kinds (the test suite, under a minute)
#   DRY_RUN=1 benchmarks/sweep_finetuned.sh OUT_DIR  # check every option, print each phase's command; write nothing
#
# Profile (why: docs/results-finetuned.md, "Choosing the profile"):
# * pretraining: ResNet-9 width 0.5 on 48,500 clean training images (4,850 per class: images
#   150..4999 of every class, so never one the fine-tuning set holds) in two stages at batch 128:
#   10 epochs from scratch (the memorising profile's recipe, peak lr 0.025, seed 0, 5 % held out for
#   validation), then 10 more from those weights at peak lr 0.01 (seed 1), bf16 on CPUs with native
#   bf16: about 20 minutes of one core per stage. The backbone is committed at
#   benchmarks/results/finetuned/pretrained.safetensors with its sha256 and clean test accuracy in
#   pretrained.json beside it; the script reuses it when the sha256 matches and pretrains only when
#   neither file is there (a backbone without a matching record is refused, never overwritten);
# * fine-tuning: the memorising profile's data (docs/results-cpu.md): the first 1,500 CIFAR-10
#   training images (150 per class), 2,000 test images (200 per class, the same test images the
#   backbone is scored on), 5 % held out for validation, 30 corrupted = 2 % of the training split
#   (interclass: 15 cats + 15 dogs = 10 % of each class). Same data, corruption and seeds as that
#   profile, so the two differ only in where the models start;
# * every model fine-tunes the whole backbone (the classifier too: same ten classes) for
#   FT_EPOCHS=40 epochs at batch 128 and peak learning rate FT_LR=0.005: from the two-stage backbone
#   it fitted the corrupted samples at 1.00 (label noise) and 0.93 (poison) with 0.800 and 0.807
#   clean test accuracy; 0.01 fitted both at 1.00 but left 0.779 and 0.789 (seed 0);
# * budgets at the paper's ratios to its ~41-epoch training run, x FT_EPOCHS/41 (rounded, at least
#   1; at 40 epochs the paper's own: REM 10 outer iterations, finetune 10 epochs, scrub 3); retrain
#   repeats the recorded fine-tuning recipe from the same backbone; everything else at its default;
# * seeds 0,1,2; discovery 0.1,0.5,1.0 first, then 0.3,0.7.
#
# Phases, most informative first; each resumes the same folder (finished cells are kept):
#   1. the nine fine-tuned models, with the two cheapest methods (npo, ga), rates 0.1,0.5,1.0
#   2. REM: rem (the default), rem-full (the research code's repair), rem-redirect, rates 0.1,0.5,1.0
#   3. retrain (from the backbone), finetune, scrub, potion, rates 0.1,0.5,1.0
#   4. rates 0.3,0.7 for phases 1-3
# PHASES=1,2 runs only those; PHASE<N>_METHODS=a,b replaces phase N's methods. BUDGET_MINUTES=N
# stops the running sweep phase when time is up (finished cells are kept) and rebuilds the report.
# Environment (optional): SOURCE, CACHE_DIR, PRETRAIN_CACHE_DIR, PRETRAINED, SEEDS, DEVICE (default
# cpu), REMCLI, PYTHON, DRY_RUN=1, WORKERS=N, FT_EPOCHS, FT_LR.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/_sweep_common.sh "$@"
SEEDS=${SEEDS:-0,1,2}
DEVICE=${DEVICE:-cpu}
PHASES=${PHASES:-1,2,3,4}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/remcli

PHASE1=${PHASE1_METHODS:-npo,ga}
PHASE2=${PHASE2_METHODS:-rem,rem-full,rem-redirect}
PHASE3=${PHASE3_METHODS:-retrain,finetune,scrub,potion}
PHASE4=${PHASE4_METHODS:-$PHASE1,$PHASE2,$PHASE3}

if [ "${TINY:-0}" = 1 ]; then
  CACHE_DIR=${CACHE_DIR:-$CACHE_ROOT/cifar10-tiny}
  PRETRAIN_CACHE_DIR=${PRETRAIN_CACHE_DIR:-$CACHE_DIR-pretrain}
  PER_CLASS=30; TEST_PER_CLASS=10; SEEDS=${TINY_SEEDS:-0}; KINDS=poison,label-noise  # two kinds: the plumbing, in under a minute
  PRE_PER_CLASS=40; PRE_EPOCHS=1; PRE_MORE_EPOCHS=1; WIDTH=0.125
  PRETRAINED=${PRETRAINED:-${OUT%/}-pretrained.safetensors}  # a toy backbone beside its run (the sweep wants OUT to itself), never the committed one
  FT_EPOCHS=${FT_EPOCHS:-1}; FT_LR=${FT_LR:-0.025}; COUNT=6; BATCH=64
  FIRST_RATES=1.0; MORE_RATES=0.5
  BUDGETS=('*.epochs=1' '*.batch_size=64' '*.flush_max_epochs=2' '*.max_epochs=2' '*.max_tries=5' '*.max_steps=5' '*.diagnostic_samples=32')
  PHASE3=retrain,finetune; PHASE4=rem  # the plumbing, at toy size
else
  CACHE_DIR=${CACHE_DIR:-$CACHE_ROOT/cifar10-1500}  # the memorising profile's subset (benchmarks/sweep_cpu.sh)
  PRETRAIN_CACHE_DIR=${PRETRAIN_CACHE_DIR:-$CACHE_ROOT/cifar10-pretrain-48500}
  PER_CLASS=150; TEST_PER_CLASS=200; KINDS=poison,interclass,label-noise
  PRE_PER_CLASS=4850; PRE_EPOCHS=10; PRE_MORE_EPOCHS=10; WIDTH=0.5
  PRETRAINED=${PRETRAINED:-benchmarks/results/finetuned/pretrained.safetensors}
  FT_EPOCHS=${FT_EPOCHS:-40}; FT_LR=${FT_LR:-0.005}; COUNT=30; BATCH=128
  FIRST_RATES=0.1,0.5,1.0; MORE_RATES=0.3,0.7
  scaled() { local n=$(( (FT_EPOCHS * $1 + 20) / 41 )); echo $(( n > 0 ? n : 1 )); }  # round(FT_EPOCHS * $1 / 41), at least 1
  BUDGETS=("*.batch_size=$BATCH" "finetune.epochs=$(scaled 10)" "scrub.epochs=$(scaled 3)")
  for v in ${PHASE2//,/ }; do BUDGETS+=("$v.epochs=$(scaled 10)"); done  # every REM variant: rem's outer iterations
fi
PRETRAIN_RECORD=${PRETRAINED%.safetensors}.json

# --- pretraining: one clean backbone, reused whenever its recorded sha256 matches ---------------
# Two stages: PRE_EPOCHS from scratch at the default peak learning rate, then PRE_MORE_EPOCHS more from
# those weights (`train --init`) at peak PRE_MORE_LR; the second stage's output is the backbone.
PRE_MORE_LR=${PRE_MORE_LR:-0.01}
STAGE1=${PRETRAINED%.safetensors}-stage1.safetensors
pretrain_cmd=("$REMCLI" train --data "imagefolder:$PRETRAIN_CACHE_DIR" --arch resnet9 --width "$WIDTH" --epochs "$PRE_EPOCHS"
              --batch-size "$BATCH" --seed 0 --device "$DEVICE" --json "$PRETRAIN_RECORD.stage1" --out "$STAGE1")
continue_cmd=("$REMCLI" train --data "imagefolder:$PRETRAIN_CACHE_DIR" --arch resnet9 --width "$WIDTH" --epochs "$PRE_MORE_EPOCHS"
              --batch-size "$BATCH" --lr "$PRE_MORE_LR" --seed 1 --init "$STAGE1" --device "$DEVICE" --json "$PRETRAIN_RECORD.stage2"
              --out "$PRETRAINED")
if [ -f "$PRETRAINED" ]; then
  "$PYTHON" benchmarks/pretrained_record.py check "$PRETRAINED" "$PRETRAIN_RECORD" || exit 2
elif [ "${DRY_RUN:-0}" = 1 ]; then
  echo "pretrain commands (dry run: $PRETRAINED does not exist yet, so the fine-tuning commands cannot be checked):"
  echo "  $(printf '%q ' "${pretrain_cmd[@]}")"
  echo "  $(printf '%q ' "${continue_cmd[@]}")"
  exit 0
else
  [ ! -f "$PRETRAIN_RECORD" ] || { echo "error: $PRETRAIN_RECORD exists without $PRETRAINED; restore the backbone or delete the record" >&2; exit 2; }
  "$PYTHON" benchmarks/prepare_cifar_subset.py --source "$SOURCE" --per-class $PRE_PER_CLASS --offset $PER_CLASS \
    --test-per-class $TEST_PER_CLASS --out "$PRETRAIN_CACHE_DIR"
  mkdir -p "$(dirname "$PRETRAINED")"
  echo "pretrain command, stage 1: $(printf '%q ' "${pretrain_cmd[@]}")"
  "${pretrain_cmd[@]}"
  echo "pretrain command, stage 2: $(printf '%q ' "${continue_cmd[@]}")"
  "${continue_cmd[@]}"
  "$PYTHON" benchmarks/pretrained_record.py write "$PRETRAINED" "$PRETRAIN_RECORD" --remcli "$REMCLI" --device "$DEVICE" \
    --stage "$PRETRAIN_RECORD.stage1" "$(printf '%q ' "${pretrain_cmd[@]}")" \
    --stage "$PRETRAIN_RECORD.stage2" "$(printf '%q ' "${continue_cmd[@]}")" --offset $PER_CLASS --per-class $PRE_PER_CLASS
  rm -f "$PRETRAIN_RECORD.stage1" "$PRETRAIN_RECORD.stage2" "$STAGE1"  # the record keeps both stages' summaries and commands
fi

# --- fine-tuning sweep ------------------------------------------------------------------------------
"$PYTHON" benchmarks/prepare_cifar_subset.py --source "$SOURCE" --per-class $PER_CLASS --test-per-class $TEST_PER_CLASS --out "$CACHE_DIR"
methods_json=$("$REMCLI" methods --json -)
SIZE=(--width "$WIDTH" --count "$COUNT" --train-epochs "$FT_EPOCHS" --train-batch-size "$BATCH" --train-lr "$FT_LR" --init "$PRETRAINED")

if run_phase 1 "$PHASE1" "$FIRST_RATES" && run_phase 2 "$PHASE2" "$FIRST_RATES" && run_phase 3 "$PHASE3" "$FIRST_RATES" \
   && run_phase 4 "$PHASE4" "$MORE_RATES"; then
  :
elif [ "${DRY_RUN:-0}" != 1 ] && [ -f "$OUT/sweep.json" ]; then
  "$REMCLI" sweep --out "$OUT" --report-only   # the budget ran out: rebuild the report from what finished
fi
echo "pretrained: $PRETRAINED ($PRETRAIN_RECORD); summary: $OUT/summary.md, heatmaps: $OUT/heatmaps/, rows: $OUT/results.csv"
exit $status
