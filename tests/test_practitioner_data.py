"""The practitioner's path, data side: content check, import normalisation, class names, val/ split,
resizing, absolute dataset roots, and failed writes (full disk / file too large).

Real tiny data (a 100-image copy of the CIFAR-10 fixture), real files, real subprocesses; no mocks.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from remcli.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from remcli.data.datasets import load_dataset
from remcli.data.image_folders import IMAGE_EXTENSIONS, list_image_folder
from remcli.inputs import resolve_inputs
from remcli.models import input_spec
from tests.conftest import TINY_TRAIN, error_line, invoke


def copy_tree(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def swap_two_images(root: Path) -> None:
    """Same file names, same labels, two images exchanged: only the content differs."""
    first, second = sorted((root / "train" / "cat").iterdir())[:2]
    tmp = first.with_name("swap.tmp")
    first.rename(tmp)
    second.rename(first)
    tmp.rename(second)


# --- 1. content check -----------------------------------------------------------------------------


def test_new_files_record_the_content_hash_and_class_names(small_run, small_root):
    dataset = load_dataset(f"imagefolder:{small_root}")
    meta = read_metadata(small_run / "model.safetensors")
    assert meta["dataset_content_sha256"] == dataset.content_sha256 and dataset.content_sha256.startswith("sha256:")
    assert meta["classes"] == list(dataset.classes) and meta["classes"][3] == "cat"
    manifest = json.loads((small_run / "c" / "corruption.json").read_text())
    assert manifest["content_sha256"] == dataset.content_sha256
    assert f"# content-sha256: {dataset.content_sha256}" in (small_run / "c" / "forget-0.5.txt").read_text()


def test_reordered_images_are_refused_by_checkpoint_manifest_and_index_file(small_run, small_root, tmp_path):
    moved = copy_tree(small_root, tmp_path / "moved")
    swap_two_images(moved)
    spec = f"imagefolder:{moved}"
    assert load_dataset(spec).fingerprint == load_dataset(f"imagefolder:{small_root}").fingerprint  # labels alone cannot tell

    line = error_line(invoke(["evaluate", small_run / "clean.safetensors", "--data", spec]))
    assert "other images" in line and "restore the image files" in line and str(small_run / "clean.safetensors") in line

    line = error_line(
        invoke(["train", "--data", spec, "--corruption", small_run / "c" / "corruption.json", *TINY_TRAIN, "--out", tmp_path / "m.safetensors"])
    )
    assert "corruption manifest" in line and "other images" in line and "rerun `remcli corrupt`" in line
    assert not (tmp_path / "m.safetensors").exists()

    from remcli.errors import InputError
    from remcli.inputs import read_identified

    with pytest.raises(InputError, match="other images"):
        read_identified(small_run / "c" / "forget-0.5.txt", load_dataset(spec))


def test_files_without_the_content_hash_keep_working(small_run, small_root, tmp_path):
    moved = copy_tree(small_root, tmp_path / "moved")
    swap_two_images(moved)
    spec = f"imagefolder:{moved}"
    # a checkpoint written before the field existed
    old = load_checkpoint(small_run / "clean.safetensors")
    meta = {k: v for k, v in old.meta.items() if k not in ("dataset_content_sha256", "classes")}
    save_checkpoint(tmp_path / "old.safetensors", old.state_dict, meta)
    result = invoke(["evaluate", tmp_path / "old.safetensors", "--data", spec, "--json", "-"])
    assert result.exit_code == 0, result.output
    # a manifest and index file written before the field existed
    body = json.loads((small_run / "c" / "corruption.json").read_text())
    del body["content_sha256"]
    (tmp_path / "old.json").write_text(json.dumps(body))
    forget = "".join(line for line in (small_run / "c" / "forget-0.5.txt").read_text().splitlines(True) if "content-sha256" not in line)
    (tmp_path / "old.txt").write_text(forget)
    result = invoke(["train", "--data", spec, "--corruption", tmp_path / "old.json", *TINY_TRAIN, "--out", tmp_path / "m.safetensors"])
    assert result.exit_code == 0, result.output
    result = invoke(["evaluate", tmp_path / "m.safetensors", "--forget", tmp_path / "old.txt", "--json", "-"])
    assert result.exit_code == 0, result.output


# --- 2. import normalisation, class names, val/, resizing -----------------------------------------


IMAGENET = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


def test_import_records_mean_std_and_they_replace_the_data_statistics(weights, small_root, tmp_path):
    out = tmp_path / "imported.safetensors"
    result = invoke(["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", *IMAGENET, "--out", out])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]
    inputs = resolve_inputs(load_checkpoint(out), f"imagefolder:{small_root}", None)
    assert inputs.dataset.mean == (0.485, 0.456, 0.406) and inputs.dataset.std == (0.229, 0.224, 0.225)
    assert input_spec(inputs.dataset, "resnet9").mean == (0.485, 0.456, 0.406)
    # without --mean/--std the data's own statistics are used, as before
    plain = tmp_path / "plain.safetensors"
    assert invoke(["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", "--out", plain]).exit_code == 0
    assert "mean" not in read_metadata(plain)
    data = load_dataset(f"imagefolder:{small_root}")
    assert resolve_inputs(load_checkpoint(plain), f"imagefolder:{small_root}", None).dataset.mean == data.mean != (0.485, 0.456, 0.406)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mean", "0.5,0.5,0.5"], "--mean and --std go together"),
        (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "--mean '0.5,0.5' must be 3 comma-separated"),
        (["--mean", "0.5,0.5,0.5", "--std", "0.2,0,0.2"], "--std '0.2,0,0.2' must be 3 comma-separated positive"),
    ],
)
def test_import_rejects_bad_normalisation(weights, tmp_path, args, needle):
    out = tmp_path / "x.safetensors"
    line = error_line(invoke(["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", *args, "--out", out]))
    assert needle in line
    assert not out.exists()


def test_renamed_class_folder_is_refused_naming_the_first_difference(small_run, small_root, tmp_path):
    renamed = copy_tree(small_root, tmp_path / "renamed")
    for split in ("train", "test"):
        (renamed / split / "cat").rename(renamed / split / "cat2")  # same order, same labels, same pixels
    line = error_line(invoke(["evaluate", small_run / "clean.safetensors", "--data", f"imagefolder:{renamed}"]))
    assert "label 3 is 'cat' in the checkpoint but 'cat2' in the data" in line and "rename the class folders" in line


def test_val_folder_is_the_test_split_when_test_is_absent(small_run, small_root, tmp_path):
    root = copy_tree(small_root, tmp_path / "trainval")
    (root / "test").rename(root / "val")
    dataset = load_dataset(f"imagefolder:{root}")
    assert dataset.test_split == "val" and len(dataset.test) == 40
    assert dataset.test.paths[0].startswith("val/")
    result = invoke(["evaluate", small_run / "clean.safetensors", "--data", f"imagefolder:{root}", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_split"] == "val"
    assert "has no test/ folder; test metrics are measured on its val/ split" in result.stderr
    shutil.rmtree(root / "val")
    line = error_line(invoke(["corrupt", f"imagefolder:{root}", "--kind", "label-noise", "--count", "2", "--out", tmp_path / "c"]))
    assert "no 'test' (or 'val') folder" in line


def test_folder_listing_is_torchvision_image_folder_s_order(tmp_path):
    """Sample positions are ImageFolder's order; remcli lists folders itself (importing torchvision
    costs a second per command), so the two must agree on nested folders, case and non-images."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert IMAGE_EXTENSIONS == IMG_EXTENSIONS  # the same files count as images

    root = tmp_path / "train"
    for rel in ("b/2.png", "b/10.PNG", "b/sub/a.jpg", "b/Sub2/0.JPEG", "a/z.webp", "a/y.bmp", "a/notes.txt", "a/.hidden.png", "c/x.tif"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    (root / "empty-file").write_bytes(b"")  # a file beside the class folders is not a class
    listing = list_image_folder(root)
    reference = ImageFolder(str(root), loader=lambda path: path)
    assert listing.files == [path for path, _ in reference.samples] and listing.targets == reference.targets
    assert listing.classes == tuple(reference.classes) == ("a", "b", "c")
    (root / "d").mkdir()
    (root / "d" / "readme.md").write_text("")
    (tmp_path / "test" / "a").mkdir(parents=True)
    line = error_line(invoke(["corrupt", f"imagefolder:{tmp_path}", "--kind", "label-noise", "--count", "2", "--out", tmp_path / "c"]))
    assert "class folders without images" in line and f"{root}: d" in line


def test_mixed_sizes_are_refused_naming_the_option_and_resized_with_it(small_run, small_root, tmp_path):
    root = copy_tree(small_root, tmp_path / "mixed")
    image = sorted((root / "train" / "dog").iterdir())[0]
    with Image.open(image) as img:
        img.convert("RGB").resize((48, 40)).save(image)
    line = error_line(invoke(["corrupt", f"imagefolder:{root}", "--kind", "label-noise", "--count", "2", "--out", tmp_path / "c"]))
    assert "different sizes" in line and "48x40" in line and f"imagefolder:{root}?size=32" in line
    resized = load_dataset(f"imagefolder:{root}?size=32")
    assert resized.input_shape == (3, 32, 32) and resized.spec == f"imagefolder:{root}?size=32"
    assert load_dataset(f"imagefolder:{root}?size=16").input_shape == (3, 16, 16)
    # the spec (with ?size) travels in the checkpoint, so unlearn/evaluate load the data the same way
    out = tmp_path / "m.safetensors"
    assert invoke(["train", "--data", f"imagefolder:{root}?size=24", *TINY_TRAIN, "--out", out]).exit_code == 0
    assert read_metadata(out)["dataset"] == f"imagefolder:{root}?size=24" and read_metadata(out)["input_shape"] == [3, 24, 24]
    assert invoke(["evaluate", out, "--json", "-"]).exit_code == 0
    # a shape mismatch points at the resize option, not at --data alone
    line = error_line(invoke(["evaluate", small_run / "clean.safetensors", "--data", f"imagefolder:{root}?size=16"]))
    assert "expects inputs [3, 32, 32]" in line and "imagefolder:ROOT?size=32" in line
    line = error_line(invoke(["corrupt", "cifar10:/nowhere?size=32", "--kind", "label-noise", "--count", "2", "--out", tmp_path / "c"]))
    assert "only for imagefolder" in line
    line = error_line(invoke(["corrupt", f"imagefolder:{root}?size=0", "--kind", "label-noise", "--count", "2", "--out", tmp_path / "c"]))
    assert "must be a positive integer" in line


def test_imported_shape_mismatch_points_at_import(weights, small_root, tmp_path):
    out = tmp_path / "imported64.safetensors"
    result = invoke(
        ["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", "--input-shape", "3,64,64", "--out", out]
    )
    assert result.exit_code == 0, result.output
    line = error_line(invoke(["evaluate", out, "--data", f"imagefolder:{small_root}"]))
    assert "re-run `remcli import` with the --input-shape" in line and "imagefolder:ROOT?size=64" in line


# --- 3. dataset roots are recorded as absolute paths ---------------------------------------------


def test_relative_roots_are_recorded_absolute_and_work_from_another_directory(small_root, tmp_path, monkeypatch):
    work = tmp_path / "work"
    copy_tree(small_root, work / "ds")
    monkeypatch.chdir(work)
    assert invoke(["corrupt", "imagefolder:ds", "--kind", "label-noise", "--count", "4", "--discovery", "1.0", "--out", "c"]).exit_code == 0
    assert json.loads((work / "c" / "corruption.json").read_text())["dataset"] == f"imagefolder:{work / 'ds'}"
    result = invoke(["train", "--data", "imagefolder:ds", "--corruption", "c/corruption.json", *TINY_TRAIN, "--out", "m.safetensors"])
    assert result.exit_code == 0, result.output
    assert read_metadata(work / "m.safetensors")["dataset"] == f"imagefolder:{work / 'ds'}"
    monkeypatch.chdir(tmp_path)
    result = invoke(["evaluate", work / "m.safetensors", "--forget", work / "c" / "forget-1.0.txt", "--json", "-"])
    assert result.exit_code == 0, result.output
    # absolute specs are recorded exactly as given
    assert load_dataset(f"imagefolder:{small_root}").spec == f"imagefolder:{small_root}"


# --- 4. failed writes: one line, exit 1, nothing partial left --------------------------------------


def run_limited(args: list, max_bytes: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess whose files may not grow past `max_bytes` (SIGXFSZ ignored: writes fail with EFBIG)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "100"}
    env.pop("REMCLI_DEBUG", None)
    code = "import sys; sys.argv[0] = 'remcli'; from remcli.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=300
    )


def assert_write_failure(proc: subprocess.CompletedProcess, path: Path, option: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: file too large writing {path}") and f"choose another {option}" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_a_failed_checkpoint_write_leaves_nothing_and_says_why(weights, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "m.safetensors"
    proc = run_limited(
        ["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", "--out", target], 64 * 1024, tmp_path
    )
    assert_write_failure(proc, target, "--out")
    assert list(out.iterdir()) == []  # no partial file, no temporary file


def test_a_failed_json_write_leaves_nothing_and_says_why(weights, tmp_path):
    checkpoint = tmp_path / "m.safetensors"
    assert invoke(["import", weights, "--arch", "resnet9", "--arch-arg", "width=0.25", "--num-classes", "10", "--out", checkpoint]).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    proc = run_limited(["inspect", checkpoint, "--json", out / "meta.json"], 200, tmp_path)
    assert_write_failure(proc, out / "meta.json", "--json")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "code, start, hint",
    [
        (errno.ENOSPC, "error: no space left on device writing", "free space or choose another --out"),
        (errno.EDQUOT, "error: disk quota exceeded writing", "free space or choose another --out"),
        (errno.EACCES, "error: cannot write", "choose a writable --out"),
    ],
)
def test_write_failures_name_the_file_and_the_cause(code, start, hint, tmp_path):
    """The message for causes a test cannot provoke for real here (a full disk); EFBIG is provoked above."""
    from remcli.fileio import write_failure

    message = f"error: {write_failure(tmp_path / 'm.safetensors', OSError(code, os.strerror(code)))}"
    assert message.startswith(start) and str(tmp_path / "m.safetensors") in message and hint in message
    # safetensors quotes the OS error number in its own exception text
    assert str(write_failure("x", RuntimeError(f"Error while serializing: I/O error: ... (os error {code})"))).startswith(start[len("error: ") :])


def test_inspect_shows_the_new_fields(small_run):
    result = invoke(["inspect", small_run / "clean.safetensors"])
    assert result.exit_code == 0, result.output
    assert "dataset_content_sha256" in result.stdout and "10: airplane, automobile" in result.stdout


# --- 5. extra labelled sets (evaluate --eval-set) ------------------------------------------------


def test_eval_sets_are_labelled_by_class_name_and_gateable(small_run, small_root, tmp_path):
    classes = sorted(p.name for p in (small_root / "test").iterdir())
    first, last = tmp_path / "first", tmp_path / "last"  # two sets that partition the test split
    for name in classes:
        shutil.copytree(small_root / "test" / name, (first if name in classes[:7] else last) / name)
    checkpoint = small_run / "model.safetensors"
    result = invoke(
        [
            "evaluate",
            checkpoint,
            "--eval-set",
            f"all={small_root / 'test'}",
            "--eval-set",
            f"first={first}",
            "--eval-set",
            f"last={last}",
            "--json",
            "-",
        ]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    metrics, counts = body["metrics"], body["counts"]
    assert metrics["all_acc"] == metrics["test_acc"] and counts["all"] == counts["test"]
    # `last` holds horse/ship/truck only: labelled 7, 8, 9 as in training (not 0, 1, 2), so the parts add up
    pooled = (metrics["first_acc"] * counts["first"] + metrics["last_acc"] * counts["last"]) / counts["test"]
    assert abs(pooled - metrics["test_acc"]) < 1e-5 and counts["last"] == 3 * 4
    missed = invoke(["evaluate", checkpoint, "--eval-set", f"last={last}", "--require", "last_acc>=1.01,test_acc<=1.0"])
    assert missed.exit_code == 3 and "last_acc" in missed.output


@pytest.mark.parametrize(
    ("make", "value", "needle"),
    [
        (None, "2bad=x", "NAME=FOLDER with NAME a plain identifier"),
        (None, "noequals", "NAME=FOLDER"),
        (None, "a=/no/such/folder", "is not a folder"),
        ("unknown", "a={}", "are not classes of the training data"),
        ("big", "a={}", "add ?size=32"),
    ],
)
def test_bad_eval_sets_are_one_line_errors(small_run, small_root, tmp_path, make, value, needle):
    folder = tmp_path / "set"
    if make == "unknown":
        shutil.copytree(small_root / "test" / "cat", folder / "tiger")
    elif make == "big":
        (folder / "cat").mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(folder / "cat" / "x.png")
    line = error_line(invoke(["evaluate", small_run / "model.safetensors", "--eval-set", value.format(folder)]))
    assert needle in line
    if make == "big":  # the fix the message names works
        result = invoke(["evaluate", small_run / "model.safetensors", "--eval-set", f"a={folder}?size=32", "--json", "-"])
        assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["a"] == 1, result.output
