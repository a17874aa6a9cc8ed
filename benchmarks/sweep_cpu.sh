#!/usr/bin/env bash
# The memorising CPU profile: the paper's regime (every trained model fits its corrupted samples)
# at a size two CPU cores can map over several sessions. Results: docs/results-cpu.md.
#
#   benchmarks/sweep_cpu.sh OUT_DIR          # e.g. runs/sweep-cpu; rerun the same line to resume
#   TINY=1 benchmarks/sweep_cpu.sh OUT_DIR   # the same phases at toy size, two kinds (the test suite, under a minute)
#
# Profile (why: docs/results-cpu.md, "Choosing the profile"):
# * data: 1,500 CIFAR-10 training images (150 per class) and 2,000 test images (200 per class),
#   from ../shared/data/cifar10/cifar10-jpeg.tar.gz; 5 % of training held out for validation;
# * corruption in the paper's proportions: 30 samples = 2 % of the training split; the interclass
#   swap is then 15 cats + 15 dogs = 10 % of each class;
# * model: ResNet-9 at width 0.5, 60 epochs at batch 128 (40 left the poison fit at 0.87), bf16 on
#   CPUs with native bf16; every method unlearns at the training batch size, 128 (paper: 512 both);
# * budgets at the paper's ratios to its ~41-epoch training run, x 60/41: REM 15 outer iterations
#   (paper 10), finetune / salun / cf-k / eu-k 15 epochs (10), neggrad+ 7 (5), scrub 4 (3);
#   retrain repeats the recorded 60-epoch recipe; everything else at its default;
# * seeds 0,1,2; discovery 0.1,0.5,1.0 first, then 0.3,0.7.
#
# Phases, most informative first; each resumes the same folder (finished cells are kept):
#   1. the nine models, with the two cheapest methods (npo, ga: seconds per cell), rates 0.1,0.5,1.0
#   2. REM: rem (the default), rem-full (the research code's repair) and rem-redirect (the redirect
#      made real), rates 0.1,0.5,1.0
#   3. retrain, finetune, scrub, potion, neggrad+, salun, rates 0.1,0.5,1.0
#   4. REM ablations: one change added to rem-full, or one of rem-redirect's reverted, rates 0.1,0.5,1.0
#   5. rates 0.3,0.7 for phases 1-3
#   6. the remaining baselines (ssd, badteacher, cf-k, eu-k), all five rates
#   7. detect+rem-full and detect+rem-redirect (remcli detect adds candidates to the identified set,
#      then REM), rates 0.1,0.3, against REM on the identified set alone (phases 2 and 5)
# PHASES=1,2 runs only those; PHASE<N>_METHODS=a,b replaces phase N's methods (e.g. one ablation). BUDGET_MINUTES=N stops the running phase when time is up (finished
# cells are kept) and rebuilds the report. Environment (optional): SOURCE, CACHE_DIR, SEEDS,
# DEVICE (default cpu), REMCLI, PYTHON, DRY_RUN=1 (check every option, print each phase's command), WORKERS=N (N local
# workers share the folder; more can join from other shells or machines with the same command).
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/_sweep_common.sh "$@"
SEEDS=${SEEDS:-0,1,2}
DEVICE=${DEVICE:-cpu}
PHASES=${PHASES:-1,2,3,4,5,6,7}

# REM variants (remcli/unlearning/methods/rem/config.py): `rem` (the default: the research code's
# mechanism with a repair that does only the work its loss reads, on a fraction of the retain set),
# `rem-full` (the research code's repair as written; cells named `rem` before the cost change ran
# this) and `rem-redirect` (rem-full with the five changes that make the redirect real). Ablations:
# rem-full@conv10 and rem-full@fresh add one change to rem-full (conv units at 10x lr; fresh optimiser
# state at each phase switch), rem-full@preferred and rem-full@conv10-preferred add continued removal
# only while the drop view still predicts the corrupted label, the rem-redirect@... ones revert one of
# rem-redirect's. (The flush's stopping check is not ablated: here the identified set is at most 30
# samples, one batch, so checking gamma per step or per epoch is the same run.) Two earlier candidates
# of rem's cost change: rem@unscaled (identified rows' terms not weighted by the repair fraction) and
# rem@plain-recal (that, and BatchNorm recalibrated on non-augmented samples).
ABLATIONS=(rem@unscaled.identified_weight=one rem@plain-recal.identified_weight=one rem@plain-recal.bn_recalibration_augment=false rem-full@conv10.units=conv rem-full@conv10.new_units_lr_scale=10 rem-full@fresh.fresh_optimizer=true rem-full@preferred.removal=while-preferred
           rem-full@conv10-preferred.units=conv rem-full@conv10-preferred.new_units_lr_scale=10 rem-full@conv10-preferred.removal=while-preferred
           rem-redirect@bn-batch.bn=batch rem-redirect@momentum.fresh_optimizer=false rem-redirect@epoch-flush.flush_stop=epoch
           rem-redirect@bottleneck.units=bottleneck rem-redirect@units-lr1.new_units_lr_scale=1)
PHASE1=${PHASE1_METHODS:-npo,ga}
PHASE2=${PHASE2_METHODS:-rem,rem-full,rem-redirect}
PHASE3=${PHASE3_METHODS:-retrain,finetune,scrub,potion,neggrad+,salun}
PHASE4=${PHASE4_METHODS:-rem-full@conv10,rem-full@fresh,rem-full@conv10-preferred,rem-full@preferred,rem-redirect@bn-batch,rem-redirect@momentum,rem-redirect@epoch-flush,rem-redirect@bottleneck,rem-redirect@units-lr1}
PHASE6=${PHASE6_METHODS:-ssd,badteacher,cf-k,eu-k}
PHASE7=${PHASE7_METHODS:-detect+rem-full,detect+rem-redirect}

if [ "${TINY:-0}" = 1 ]; then
  CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remcli/cifar10-tiny}
  PER_CLASS=30; TEST_PER_CLASS=10; SEEDS=${TINY_SEEDS:-0}; KINDS=poison,label-noise  # two kinds: the plumbing, in under a minute
  SIZE=(--width 0.125 --count 6 --train-epochs 1 --train-batch-size 64)
  FIRST_RATES=1.0; MORE_RATES=0.5
  BUDGETS=('*.epochs=1' '*.batch_size=64' '*.flush_max_epochs=2' '*.max_epochs=2' '*.max_tries=5' '*.max_steps=5' '*.diagnostic_samples=32')
  PHASE3=retrain,finetune; PHASE4=rem-redirect@bottleneck; PHASE6=ssd; PHASE7=detect+ga  # one or two methods per phase: the plumbing, at toy size
  LOW_RATES=0.5
else
  CACHE_DIR=${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remcli/cifar10-1500}
  PER_CLASS=150; TEST_PER_CLASS=200; KINDS=poison,interclass,label-noise
  SIZE=(--width 0.5 --count 30 --train-epochs 60 --train-batch-size 128)
  FIRST_RATES=0.1,0.5,1.0; MORE_RATES=0.3,0.7; LOW_RATES=0.1,0.3
  BUDGETS=('*.batch_size=128' rem.epochs=15 finetune.epochs=15 salun.epochs=15 cf-k.epochs=15 eu-k.epochs=15 neggrad+.epochs=7 scrub.epochs=4)
  for v in rem-full rem-redirect ${PHASE4//,/ } ${PHASE7//,/ }; do  # every REM variant gets rem's 15 outer iterations
    BUDGETS+=("$v.epochs=15")
  done
fi

"$PYTHON" benchmarks/prepare_cifar_subset.py --source "$SOURCE" --per-class $PER_CLASS --test-per-class $TEST_PER_CLASS --out "$CACHE_DIR"
methods_json=$("$REMCLI" methods --json -)

if run_phase 1 "$PHASE1" "$FIRST_RATES" && run_phase 2 "$PHASE2" "$FIRST_RATES" && run_phase 3 "$PHASE3" "$FIRST_RATES" \
   && run_phase 4 "$PHASE4" "$FIRST_RATES" && run_phase 5 "$PHASE1,$PHASE2,$PHASE3" "$MORE_RATES" \
   && run_phase 6 "$PHASE6" "$FIRST_RATES,$MORE_RATES" && run_phase 7 "$PHASE7" "$LOW_RATES"; then
  :
elif [ "${DRY_RUN:-0}" != 1 ] && [ -f "$OUT/sweep.json" ]; then
  "$REMCLI" sweep --out "$OUT" --report-only   # the budget ran out: rebuild the report from what finished
fi
echo "summary: $OUT/summary.md, heatmaps: $OUT/heatmaps/, rows: $OUT/results.csv"
exit $status
