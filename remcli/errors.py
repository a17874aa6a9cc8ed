"""One user-facing error type, mapped to exit codes once, at the CLI edge.

Library code raises these; it never prints or exits. Every message names the problem and the
fix in one line. The exit codes are `EXIT_CODES` (shown by `remcli --help`, listed in the README).

A result that would be wrong (non-finite weights: the run diverged) is never written: exit 1.
An unchanged unlearning result is written with a warning and `"changed": false` in the JSON
summary and the history, unless `--fail-if-unchanged` asks for exit 4.
"""

EXIT_CODES = {
    0: "success",
    1: "runtime failure (anything unexpected; a diverged run writes nothing)",
    2: "usage or input error (bad file, bad option, mismatched data)",
    3: "evaluate --gate (--require, --fail-under): a quality gate was missed",
    4: "unlearn --fail-if-unchanged: unlearning left every tensor unchanged (nothing written)",
}


def exit_codes_text() -> str:
    return "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())


class RemcliError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class WriteError(RemcliError):
    """An output could not be written (disk full, file too large, no permission). Exit code 1.

    Nothing partial is left behind: the temporary file is removed before this is raised.
    """

    exit_code = 1


class InputError(RemcliError):
    """The user gave us something we cannot use (file, option, data). Exit code 2."""

    exit_code = 2


class ThresholdError(RemcliError):
    """An `evaluate --gate` (`--fail-under`) quality gate was missed. Exit code 3."""

    exit_code = 3


class ResultError(RemcliError):
    """The computed result must not be written (non-finite weights: the run diverged). Exit code 1."""

    exit_code = 1


class UnchangedError(RemcliError):
    """`unlearn --fail-if-unchanged` and the output equals the input. Exit code 4."""

    exit_code = 4
