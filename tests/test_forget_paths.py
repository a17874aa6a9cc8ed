"""`--forget` names samples by image path (imagefolder data) or reads its lines from stdin (`-`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from remcli.cli.main import app
from remcli.data import load_dataset, read_index_file
from remcli.errors import InputError
from remcli.inputs import read_identified

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(cifar_spec):
    return load_dataset(cifar_spec)


def invoke(args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"}, **kwargs)


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_imagefolder_split_keeps_each_samples_root_relative_path(dataset, cifar_root):
    paths = dataset.train.paths
    assert paths is not None and len(paths) == len(dataset.train)
    assert all(p.startswith("train/") for p in paths) and all(p.startswith("test/") for p in dataset.test.paths)
    assert len(set(paths)) == len(paths)
    for position in (0, 1, len(paths) // 2, len(paths) - 1):  # the path is the file decoded at that position
        with Image.open(cifar_root / paths[position]) as img:
            pixels = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(pixels, dataset.train.images[position]), position
        assert dataset.classes[int(dataset.train.labels[position])] == Path(paths[position]).parent.name


def test_paths_resolve_to_training_positions(dataset, cifar_root, tmp_path):
    paths = dataset.train.paths
    noted = paths[3] + "  # trigger visible"
    lines = ["# identified by a reviewer", noted, "./" + paths[10], str(cifar_root / paths[20]), "42", "", paths[7].replace("/", "\\")]
    index = tmp_path / "forget.txt"
    index.write_text("\n".join(lines) + "\n")
    assert read_identified(index, dataset).tolist() == [3, 7, 10, 20, 42]


def test_unknown_paths_are_one_error_naming_the_first_bad_lines(dataset, tmp_path):
    paths = dataset.train.paths
    bad = ["train/cat/nope.jpg", dataset.test.paths[0], "cat.jpg", "train/", "/elsewhere/train/cat/1.jpg", "x"]
    index = tmp_path / "forget.txt"
    index.write_text("\n".join([paths[0], *bad]) + "\n")
    with pytest.raises(InputError) as err:
        read_identified(index, dataset)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"{index}:2: 'train/cat/nope.jpg' is not an integer or a training image path (also line 3 '{dataset.test.paths[0]}', "
        "line 4 'cat.jpg', line 5 'train/' and 2 more)"
    )
    assert f"e.g. {paths[0]}" in message


def test_paths_and_positions_naming_one_sample_twice_are_refused(dataset, tmp_path):
    index = tmp_path / "forget.txt"
    index.write_text(f"5\n{dataset.train.paths[5]}\n")
    with pytest.raises(InputError, match=r"repeats indices \[5\]"):
        read_identified(index, dataset)


def test_without_paths_a_non_integer_line_keeps_its_message(tmp_path):
    index = tmp_path / "forget.txt"
    index.write_text("1\ntrain/cat/0001.jpg\n")
    with pytest.raises(InputError, match=r":2: 'train/cat/0001.jpg' is not an integer; write one sample index per line"):
        read_index_file(index, 10)


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(poisoned_run) -> Path:
    return poisoned_run / "model.safetensors"


@pytest.fixture(scope="module")
def by_position(model, poisoned_run) -> dict:
    result = invoke(["evaluate", model, "--device", "cpu", "--forget", poisoned_run / "c" / "forget-0.5.txt", "--json", "-"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def as_paths(index_file: Path, dataset) -> str:
    return "".join(f"{dataset.train.paths[int(line)]}\n" for line in index_file.read_text().splitlines() if line.strip() and not line.startswith("#"))


def test_evaluate_forget_paths_equals_positions(model, poisoned_run, dataset, by_position, tmp_path):
    index = tmp_path / "forget-paths.txt"
    index.write_text(as_paths(poisoned_run / "c" / "forget-0.5.txt", dataset))
    result = invoke(["evaluate", model, "--device", "cpu", "--forget", index, "--json", "-"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["counts"] == by_position["counts"] and payload["metrics"] == by_position["metrics"]


def test_evaluate_forget_dash_reads_stdin(model, poisoned_run, dataset, by_position):
    text = (poisoned_run / "c" / "forget-0.5.txt").read_text()
    result = invoke(["evaluate", model, "--device", "cpu", "--forget", "-", "--json", "-"], input=text)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["counts"] == by_position["counts"] and payload["metrics"] == by_position["metrics"]
    # paths on stdin too
    result = invoke(
        ["evaluate", model, "--device", "cpu", "--forget", "-", "--json", "-"], input=as_paths(poisoned_run / "c" / "forget-0.5.txt", dataset)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == by_position["counts"]


def test_evaluate_unknown_path_exits_2(model, tmp_path):
    index = tmp_path / "forget.txt"
    index.write_text("train/airplane/missing.jpg\n")
    out = tmp_path / "r.json"
    line = one_error_line(invoke(["evaluate", model, "--device", "cpu", "--forget", index, "--json", out]))
    assert "'train/airplane/missing.jpg' is not an integer or a training image path" in line
    assert not out.exists()


def test_unlearn_reads_stdin_and_refuses_unknown_paths_there(model, tmp_path):
    out = tmp_path / "healed.safetensors"
    line = one_error_line(invoke(["unlearn", model, "--forget", "-", "--out", out, "--device", "cpu", "--quiet"], input="3\ntrain/dog/none.png\n"))
    assert line.startswith("error: stdin:2: 'train/dog/none.png' is not an integer or a training image path")
    assert not out.exists()
    line = one_error_line(invoke(["unlearn", model, "--forget", "-", "--out", out, "--device", "cpu", "--quiet"], input=""))
    assert "index file stdin lists no samples" in line
