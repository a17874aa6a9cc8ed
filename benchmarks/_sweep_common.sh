# Shared preamble of the sweep benchmark scripts (sourced with the script's arguments):
# checks for the one OUT_DIR argument and resolves PYTHON, REMCLI and SOURCE from the environment.
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT=$1
PYTHON=${PYTHON:-python3}
if [ -z "${REMCLI:-}" ]; then
  if command -v remcli >/dev/null; then REMCLI=remcli; else REMCLI=.venv/bin/remcli; fi
fi
SOURCE=${SOURCE:-../shared/data/cifar10/cifar10-jpeg.tar.gz}

status=0
# BUDGET_MINUTES (optional): each sweep command gets the time left and is stopped (SIGTERM: finished
# cells are kept) when it runs out.
deadline=""
if [ -n "${BUDGET_MINUTES:-}" ]; then deadline=$(( $(date +%s) + BUDGET_MINUTES * 60 )); fi

# run_sweep_command LABEL CMD...: print and run one `remcli sweep` command within the deadline and
# record it (label, seconds, exit code) in $OUT/commands.sh. Returns 0 when it finished (exit 1,
# some cells failed, also sets status=1: the next run retries them), 1 when the budget is spent
# (before or during it); any other exit code (2: bad input) ends the script with that code.
run_sweep_command() {
  local label=$1; shift
  local prefix=()
  if [ -n "$deadline" ]; then
    local left=$(( deadline - $(date +%s) ))
    if [ $left -le 0 ]; then echo "budget spent; skipping $label"; return 1; fi
    prefix=(timeout --signal=TERM --kill-after=120 "$left")
  fi
  echo "$label command: $(printf '%q ' "$@")"
  local started; started=$(date +%s)
  SWEEP_RC=0
  "${prefix[@]}" "$@" || SWEEP_RC=$?
  if [ "${DRY_RUN:-0}" != 1 ] && [ -f "$OUT/sweep.json" ]; then
    { printf '# %s, %s s, exit %s\n' "$label" $(( $(date +%s) - started )) "$SWEEP_RC"; printf '%q ' "$@"; echo; } >> "$OUT/commands.sh"
  fi
  case $SWEEP_RC in
    0) return 0 ;;
    1) status=1; return 0 ;;
    124|130|137|143) echo "budget spent during $label"; return 1 ;;
    *) exit "$SWEEP_RC" ;;
  esac
}

# run_phase NAME METHODS RATES: one phase's `remcli sweep` over the profile (the calling script sets
# PHASES, methods_json, BUDGETS, optionally ABLATIONS, CACHE_DIR, SIZE, KINDS, SEEDS and DEVICE);
# skipped unless NAME is in PHASES.
run_phase() {
  case ",$PHASES," in *",$1,"*) ;; *) return 0 ;; esac
  local args
  mapfile -t args < <(printf '%s' "$methods_json" | "$PYTHON" benchmarks/sweep_args.py --methods "$2" "${BUDGETS[@]}" ${ABLATIONS[@]+"${ABLATIONS[@]}"})
  [ ${#args[@]} -gt 0 ] || exit 2
  local cmd=("$REMCLI" sweep --data "imagefolder:$CACHE_DIR" --arch resnet9 "${SIZE[@]}" --kinds "$KINDS"
             --discovery "$3" --seeds "$SEEDS" "${args[@]}" --device "$DEVICE" --out "$OUT")
  if [ "${DRY_RUN:-0}" = 1 ]; then cmd+=(--dry-run); elif [ "${WORKERS:-1}" -gt 1 ]; then cmd+=(--workers "$WORKERS"); fi
  run_sweep_command "phase $1" "${cmd[@]}"
}
