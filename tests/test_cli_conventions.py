"""CLI conventions: -h, a fast --version, clean metavars, reflowed help, and CI-friendly stderr."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from remcli import __version__
from remcli.cli.app import EXAMPLES, reflow
from remcli.cli.main import app
from remcli.cli.output import OneBarReporter, RichReporter, stderr
from remcli.progress import PrefixedReporter

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
COMMANDS = sorted(info.name for info in app.registered_commands)
TORCHRUN_FLAGS = {"--nproc-per-node"}


def invoke(args, columns: int = 200, **kwargs):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)}, **kwargs)


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, **kwargs)


# --- -h / --help ---------------------------------------------------------------------------------


def test_every_command_is_there():
    assert COMMANDS == sorted(["corrupt", "train", "detect", "unlearn", "evaluate", "sweep", "inspect", "methods", "archs", "import", "index"])


@pytest.mark.parametrize("args", [[], *[[name] for name in COMMANDS]], ids=lambda a: " ".join(a) or "remcli")
def test_dash_h_is_help(args):
    short, long = invoke([*args, "-h"]), invoke([*args, "--help"])
    assert short.exit_code == 0 and long.exit_code == 0, (short.output, long.output)
    assert "Usage: remcli" in short.stdout and short.stdout == long.stdout


# --- metavars and paragraphs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_no_python_type_metavars_for_flags_and_lists(name):
    text = invoke([name, "--help"]).stdout
    assert "<bool>" not in text and "<list[" not in text, text


def test_flags_show_no_metavar_and_lists_show_name_value():
    text = invoke(["unlearn", "--help"]).stdout
    assert re.search(r"--force\s+│?\s*Overwrite an existing output file", text), text
    assert re.search(r"--set\s+NAME=VALUE\s", text) and re.search(r"--arch-arg\s+NAME=VALUE\s", text)
    assert re.search(r"--set\s+METHOD\.NAME=VALUE\s", invoke(["sweep", "--help"]).stdout)
    assert re.search(r"-h, --help\s+Show this message", text)


def on_a_terminal(args, columns: int) -> str:
    """Help as a terminal of `columns` columns shows it (rich panels), without its styles."""
    result = runner.invoke(app, args, env={"COLUMNS": str(columns), "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)


def test_help_paragraphs_reflow_instead_of_keeping_docstring_line_breaks():
    text = on_a_terminal(["unlearn", "--help"], columns=250)
    # the docstring breaks this sentence after "has"; rendered, it is one paragraph line at this width
    assert "╭" in text and "The output has exactly the input's tensor names and shapes; its history records the method" in text
    narrow = on_a_terminal(["unlearn", "--help"], columns=60)
    assert all(len(line) <= 60 for line in narrow.splitlines())


@pytest.mark.parametrize("name", COMMANDS)
def test_help_in_a_pipe_at_80_columns_cuts_nothing_and_ends_with_examples(name):
    text = invoke([name, "--help"], columns=80).stdout
    assert "…" not in text and "╭" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
    unwrapped = re.sub(r" \\\n +", " ", text)  # an example too long for the width continues with a shell's `\`
    for example in EXAMPLES[name]:
        assert example in unwrapped, (example, text)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_examples_use_only_options_the_command_has(name):
    command = typer.main.get_command(app).commands[name]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for example in EXAMPLES[name]:
        words = shlex.split(example.split("|")[0])
        assert words[words.index("remcli") + 1] == name, example
        assert {w for w in words if w.startswith("--") and w not in TORCHRUN_FLAGS} <= known, example


def test_help_in_a_real_pipe_keeps_option_names_gates_and_defaults_whole():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    text = subprocess.run([sys.executable, "-m", "remcli", "evaluate", "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "--gate, --require, --fail-under" in text and "'utility>=0.8,attack_success_rate<=0.05'" in text
    assert "…" not in text and "Examples:" in text


def test_help_text_matches_the_code():
    assert "pip install 'remcli[timm]'" in " ".join(invoke(["archs", "--help"]).stdout.split())
    # on a terminal (rich panels) the brackets are not eaten as markup either
    terminal = on_a_terminal(["archs", "--help"], columns=200)
    assert "╭" in terminal and "pip install 'remcli[timm]'" in terminal
    detect = " ".join(invoke(["detect", "--help"]).stdout.split())
    assert "Three signals" in detect and all(name in detect for name in ("similarity", "spectral", "label-quality"))
    train = " ".join(invoke(["train", "--help"]).stdout.split())
    assert "CPUs with native bf16" in train and "on CUDA. The summary" not in train


def test_reflow_joins_lines_keeps_paragraphs_and_list_items():
    doc = """First line
    continues here.

    Second paragraph
    goes on.
    * item one
      wraps
    * item two
    """
    assert reflow(doc) == "First line continues here.\n\nSecond paragraph goes on.\n* item one wraps\n* item two"


# --- --version -----------------------------------------------------------------------------------


def test_version_does_not_import_torch():
    code = (
        "import sys; sys.argv = ['remcli', '--version']\n"
        "from remcli.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "assert 'torch' not in sys.modules and 'typer' not in sys.modules, sorted(m for m in sys.modules if m in ('torch', 'typer'))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"remcli {__version__}\n"


def test_commands_on_remcli_s_own_nets_do_not_import_torchvision():
    """torchvision's models package pulls in torch._dynamo (about a second per CLI start): it is
    imported only when a torchvision model is built or listed, never for resnet9's pipeline."""
    code = (
        "import sys\n"
        "from remcli.cli.app import app\n"
        "from remcli.models import build_model\n"
        "from remcli.models.blocks import block_outputs\n"
        "model = build_model('resnet9', 10, width=0.25)\n"
        "assert block_outputs(model)\n"
        "assert 'torchvision' not in sys.modules, 'torchvision imported'\n"
        "build_model('resnet18', 10)\n"
        "assert 'torchvision.models.resnet' in sys.modules\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_version_through_the_app_and_after_help():
    assert invoke(["--version"]).stdout == f"remcli {__version__}\n"
    result = run_python("import sys; sys.argv = ['remcli', '-h', '--version']\nfrom remcli.cli.main import main\nmain()")
    assert result.returncode == 0 and result.stdout == f"remcli {__version__}\n", result.stderr


def test_main_runs_commands():
    result = run_python("import sys; sys.argv = ['remcli', 'archs', '--json', '-']\nfrom remcli.cli.main import main\nmain()")
    assert result.returncode == 0, result.stderr
    assert "resnet9" in json.loads(result.stdout)["archs"]


# --- stderr without a terminal (CI logs) ---------------------------------------------------------


def test_progress_without_a_terminal_is_plain_lines_printed_as_each_phase_ends():
    buffer = io.StringIO()  # not a terminal
    with contextlib.redirect_stderr(buffer):
        with RichReporter() as reporter:
            reporter.phase("train epoch 1/2", 3)
            reporter.advance(1)
            reporter.advance(2, loss=0.51234, acc=0.75)
            assert buffer.getvalue() == ""
            reporter.phase("train epoch 2/2", 3)
            assert buffer.getvalue() == "train epoch 1/2  3/3 steps  loss=0.5123  acc=0.75  0.0s\n"  # before the run ends
            reporter.note("a note")
            reporter.advance(3, loss=0.25)
        assert buffer.getvalue().splitlines()[1:] == ["a note", "train epoch 2/2  3/3 steps  loss=0.25  0.0s"]
    assert "\r" not in buffer.getvalue() and "\x1b" not in buffer.getvalue()


def test_progress_without_a_terminal_quiet_prints_nothing_and_sweeps_print_notes_only():
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        with RichReporter(quiet=True) as reporter:
            reporter.phase("a", 1)
            reporter.advance(1)
        with OneBarReporter() as reporter:
            reporter.phase("cell [1/3]", 2)
            reporter.advance(2)
            reporter.note("finished cell [1/3]")
    assert buffer.getvalue() == "finished cell [1/3]\n"


def test_progress_lines_reach_a_pipe_while_the_process_runs():
    code = (
        "import sys\n"
        "from remcli.cli.output import RichReporter\n"
        "with RichReporter() as r:\n"
        "    r.phase('first', 2); r.advance(2, loss=1.0); r.phase('second', 1)\n"
        "    sys.stdin.readline()  # wait until the parent has read the first line\n"
        "    r.advance(1)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 60)
        assert ready, "no progress line reached the pipe while the process was running"
        first = proc.stderr.readline()
        assert re.fullmatch(r"first  2/2 steps  loss=1  \d+\.\ds\n", first), first
        proc.stdin.write("go\n")
        proc.stdin.flush()
        rest = proc.stderr.read()
        assert re.fullmatch(r"second  1/1 steps  \d+\.\ds\n", rest), rest
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_long_messages_are_not_wrapped_without_a_terminal():
    message = "a long message " * 12
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        stderr.print(message.strip())
    assert buffer.getvalue() == message.strip() + "\n"


def test_usage_errors_without_a_terminal_are_plain_unwrapped_lines():
    bogus = "--" + "no-such-option-" * 6
    result = run_python(f"import sys; sys.argv = ['remcli', 'unlearn', 'x.safetensors', '{bogus}']; from remcli.cli.main import main; main()")
    assert result.returncode == 2
    assert f"Error: No such option: {bogus}" in result.stderr.splitlines()  # one line, however long
    assert "╭" not in result.stderr and "Try 'remcli unlearn -h' for help." in result.stderr


@pytest.mark.slow
def test_cli_train_progress_and_summary_are_unwrapped_lines(cifar_spec, tmp_path):
    out = tmp_path / ("a-long-output-directory-name-so-the-summary-line-is-longer-than-eighty-columns") / "model.safetensors"
    out.parent.mkdir()
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            cifar_spec,
            "--width",
            "0.25",
            "--epochs",
            "2",
            "--batch-size",
            "500",
            "--val-fraction",
            "0",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert re.fullmatch(r"train epoch 1/2  2/2 steps  .*loss=[0-9.]+.*\d+\.\ds", lines[0]), lines
    assert re.fullmatch(r"train epoch 2/2  2/2 steps  .*\d+\.\ds", lines[1]), lines
    assert lines[2].startswith("trained resnet9 for 2 epochs") and lines[2].endswith(f"wrote {out}") and len(lines[2]) > 80, lines
    assert len(lines) == 3 and "\r" not in result.stderr and "\x1b" not in result.stderr


def test_long_phases_print_heartbeat_lines_without_a_terminal(monkeypatch):
    from remcli.cli import output

    monkeypatch.setattr(output, "HEARTBEAT_S", 0.0)  # every advance is "30 s later"
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        with OneBarReporter() as reporter:  # sweeps: heartbeats only, no line per phase
            reporter.phase("repair 1/10", 4)
            reporter.advance(1)
            reporter.advance(1, proxy=0.5)
            reporter.phase("repair 2/10", 4)
    assert [re.sub(r"\d+\.\ds$", "T", line) for line in buffer.getvalue().splitlines()] == [
        "repair 1/10  1/4 steps  T",
        "repair 1/10  2/4 steps  proxy=0.5  T",
    ]


def test_a_phase_line_is_printed_once_and_before_what_follows_the_phase(monkeypatch):
    """A heartbeat that already showed the final state is not repeated when the phase ends, and after
    end_phase (a sweep cell is done) the phase's line comes before the cell's result note."""
    from remcli.cli import output

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        with RichReporter() as reporter:
            reporter.phase("repair 2/2", 3)
            monkeypatch.setattr(output, "HEARTBEAT_S", 0.0)  # the last advance comes "30 s later"
            reporter.advance(3, proxy=0.25)
            monkeypatch.setattr(output, "HEARTBEAT_S", 30.0)
            reporter.phase("importance", None)  # a phase that ends without a step
            PrefixedReporter(reporter, "cell").end_phase()
            reporter.note("cell: utility 50.0%")
            reporter.end_phase()  # nothing open: nothing printed
    assert [re.sub(r"\d+\.\ds$", "T", line) for line in buffer.getvalue().splitlines()] == [
        "repair 2/2  3/3 steps  proxy=0.25  T",
        "importance  0 steps  T",
        "cell: utility 50.0%",
    ]


def test_shell_completion_is_available():
    """Completion is on: the app lists --install-completion, and the completion protocol (what an
    installed bash script calls) completes a command name."""
    import shutil

    from typer.testing import CliRunner

    from remcli.cli.main import app

    listed = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in listed.output
    env = {**os.environ, "_REMCLI_COMPLETE": "complete_bash", "COMP_WORDS": "remcli eva", "COMP_CWORD": "1"}
    remcli = shutil.which("remcli", path=str(Path(sys.executable).parent))
    result = subprocess.run([remcli], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "evaluate" in result.stdout.split()


def test_tables_through_a_pipe_keep_every_cell_whole():
    """Without a terminal rich assumes 80 columns and squeezed table cells to '…' (`remcli inspect`'s
    REM diagnostics were unreadable in CI logs); a table now prints at its natural width."""
    result = invoke(["methods"], columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    listed = json.loads(invoke(["methods", "--json", "-"]).stdout)["methods"]
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("│")}
    for method in listed:  # one line per method, its whole summary on it
        assert method["summary"] in rows[method["name"]], method["name"]


def test_widening_a_table_leaves_the_console_width_to_the_environment(monkeypatch):
    """The stderr console is one object for the whole process: printing a wide table must not pin its
    width (rich derives it from COLUMNS on every call when nothing set it)."""
    import io

    from rich.table import Table

    from remcli.cli.output import CliConsole

    console = CliConsole(file=io.StringIO())
    table = Table()
    table.add_column("cell")
    table.add_row("x" * 150)
    monkeypatch.setenv("COLUMNS", "90")
    console.print("a message")
    console.print(table)
    assert "x" * 150 in console.file.getvalue()
    monkeypatch.setenv("COLUMNS", "120")
    assert console.width == 120
