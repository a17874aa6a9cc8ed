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
