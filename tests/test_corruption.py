"""Corruptions on real images: determinism, nested discovery sets, label semantics, trigger placement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from remcli.cli.main import app
from remcli.data import (
    InputSpec,
    Trigger,
    corrupt,
    identified_at,
    kind_regularity,
    kinds_by_regularity,
    load_dataset,
    load_manifest,
    read_index_file,
    write_index_file,
)
from remcli.data.triggers import POSITIONS
from remcli.data.views import clean_view, training_view
from remcli.errors import InputError

runner = CliRunner()
CPU = torch.device("cpu")
RED = (1.0, 0.0, 0.0)


def run_corrupt(spec: str, out: Path, *args: str) -> Path:
    result = runner.invoke(app, ["corrupt", spec, "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def dataset(cifar_spec):
    return load_dataset(cifar_spec)


@pytest.fixture(scope="module")
def poison_dirs(cifar_spec, tmp_path_factory):
    """The same poison command run twice into two directories."""
    base = tmp_path_factory.mktemp("poison")
    args = ("--kind", "poison", "--count", "100", "--target", "7", "--patch-size", "4", "--colour", "red", "--seed", "11")
    return run_corrupt(cifar_spec, base / "a", *args), run_corrupt(cifar_spec, base / "b", *args)


@pytest.fixture(scope="module")
def poison_manifest(poison_dirs):
    return load_manifest(poison_dirs[0] / "corruption.json")


# --- determinism -------------------------------------------------------------------------------


def test_corrupt_is_byte_identical_across_runs(poison_dirs):
    a, b = poison_dirs
    names = sorted(p.name for p in a.iterdir())
    assert names == ["corruption.json", "forget-0.1.txt", "forget-0.5.txt", "forget-1.0.txt"]
    assert sorted(p.name for p in b.iterdir()) == names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_corrupt_depends_on_seed(dataset):
    def pick(seed):
        return corrupt(
            dataset.train.labels, dataset=dataset.spec, fingerprint=dataset.fingerprint, num_classes=10, kind="label-noise", count=100, seed=seed
        )

    assert pick(1).indices == pick(1).indices and pick(1).new_labels == pick(1).new_labels
    assert pick(1).indices != pick(2).indices


# --- discovery sets ----------------------------------------------------------------------------


def test_discovery_sets_nest(poison_dirs, poison_manifest, dataset):
    out = poison_dirs[0]
    sets = {
        rate: set(read_index_file(out / f"forget-{rate}.txt", len(dataset.train), dataset.fingerprint).tolist()) for rate in ("0.1", "0.5", "1.0")
    }
    assert [len(sets[r]) for r in ("0.1", "0.5", "1.0")] == [10, 50, 100]
    assert sets["0.1"] < sets["0.5"] < sets["1.0"]
    assert sets["1.0"] == set(poison_manifest.indices)
    assert poison_manifest.discovery == {"0.1": 10, "0.5": 50, "1.0": 100}
    header = (out / "forget-0.5.txt").read_text().splitlines()
    assert f"# fingerprint: {dataset.fingerprint}" in header


def test_discovery_nests_for_every_rate(poison_manifest):
    previous: set[int] = set()
    for step in range(1, 21):
        current = set(identified_at(poison_manifest, step / 20).tolist())
        assert previous <= current and len(current) == round(step / 20 * 100)
        previous = current
    assert previous == set(poison_manifest.indices)


# --- label noise -------------------------------------------------------------------------------


def check_label_noise(manifest, labels: torch.Tensor, num_classes: int) -> None:
    idx = torch.tensor(manifest.indices)
    true = torch.tensor(manifest.true_labels)
    new = torch.tensor(manifest.new_labels)
    assert len(set(manifest.indices)) == len(manifest.indices) == manifest.params["count"]
    assert torch.equal(true, labels[idx]), "true_labels must be the dataset's labels at the indices"
    assert bool((new != true).all()), f"{int((new == true).sum())} samples kept their true label"
    assert bool(((new >= 0) & (new < num_classes)).all())
    corrupted = manifest.corrupted_labels(labels)
    changed = torch.nonzero(corrupted != labels).flatten()
    assert changed.tolist() == sorted(manifest.indices)


def test_label_noise_never_keeps_true_label(cifar_spec, dataset, tmp_path):
    out = run_corrupt(cifar_spec, tmp_path / "ln", "--kind", "label-noise", "--count", "400", "--seed", "3")
    manifest = load_manifest(out / "corruption.json")
    assert manifest.kind == "label-noise" and manifest.trigger is None
    check_label_noise(manifest, dataset.train.labels, 10)


def test_label_noise_never_keeps_true_label_on_mnist(mnist_root, tmp_path):
    spec = f"mnist:{mnist_root}"
    out = run_corrupt(spec, tmp_path / "ln", "--kind", "label-noise", "--count", "5000", "--seed", "5")
    manifest = load_manifest(out / "corruption.json")
    mnist = load_dataset(spec)
    assert manifest.num_train == 60000 and manifest.fingerprint == mnist.fingerprint
    check_label_noise(manifest, mnist.train.labels, 10)
    # the wrong label is uniform over the other classes: every offset 1..9 occurs often
    offsets = (torch.tensor(manifest.new_labels) - torch.tensor(manifest.true_labels)) % 10
    counts = torch.bincount(offsets, minlength=10)
    assert counts[0] == 0 and bool((counts[1:] > 400).all()), counts.tolist()


# --- interclass --------------------------------------------------------------------------------


def test_interclass_swaps_first_half_of_each_class(cifar_spec, dataset, tmp_path):
    out = run_corrupt(cifar_spec, tmp_path / "ic", "--kind", "interclass", "--count", "40", "--classes", "3,5")
    manifest = load_manifest(out / "corruption.json")
    labels = dataset.train.labels
    first3 = torch.nonzero(labels == 3).flatten()[:20].tolist()
    first5 = torch.nonzero(labels == 5).flatten()[:20].tolist()
    assert manifest.indices == sorted(first3 + first5)
    assert manifest.params["classes"] == [3, 5]
    for index, true, new in zip(manifest.indices, manifest.true_labels, manifest.new_labels):
        assert true == int(labels[index])
        assert new == {3: 5, 5: 3}[true]
    assert manifest.true_labels.count(3) == manifest.true_labels.count(5) == 20


def test_interclass_odd_count_is_refused(dataset):
    from remcli.errors import InputError

    with pytest.raises(InputError, match="even"):
        corrupt(dataset.train.labels, dataset="x", fingerprint="y", num_classes=10, kind="interclass", count=41, classes=(3, 5))


# --- poison manifest ---------------------------------------------------------------------------


def test_poison_manifest_records_trigger_and_target(poison_dirs, poison_manifest, dataset):
    body = json.loads((poison_dirs[0] / "corruption.json").read_text())
    assert body["schema_version"] == 1 and body["kind"] == "poison"
    assert body["params"]["target"] == 7
    assert body["trigger"]["size"] == 4
    assert body["trigger"]["position"] == "bottom-right"
    assert body["trigger"]["colour"] == [1.0, 0.0, 0.0]
    assert body["new_labels"] == [7] * 100
    assert body["true_labels"] == dataset.train.labels[torch.tensor(body["indices"])].tolist()
    assert poison_manifest.trigger_spec == Trigger(4, "bottom-right", RED)
    mask = poison_manifest.triggered_mask(len(dataset.train))
    assert torch.nonzero(mask).flatten().tolist() == poison_manifest.indices


# --- trigger placement after augmentation -------------------------------------------------------


def pixels_of(batch_inputs: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean)[None, :, None, None]
    std = torch.tensor(spec.std)[None, :, None, None]
    return batch_inputs * std + mean


def bottom_right(pixels: torch.Tensor, size: int) -> torch.Tensor:
    return pixels[:, :, -size:, -size:]


def is_red_patch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    colour = torch.tensor(RED)[None, :, None, None]
    return (bottom_right(pixels, size) - colour).abs().amax(dim=(1, 2, 3)) < 1e-5


def test_trigger_is_in_place_after_augmentation(dataset, poison_manifest):
    spec = InputSpec(dataset.mean, dataset.std, 3)
    trigger = poison_manifest.trigger_spec
    view = clean_view(dataset.train, None, CPU, trigger)  # every sample triggered
    assert bool(view.triggered.all())
    gen = torch.Generator().manual_seed(0)
    seen, moved = 0, 0
    for batch in view.batches(spec, 128, generator=gen, augment=True):
        pixels = pixels_of(batch.inputs, spec)
        assert bool(is_red_patch(pixels, 4).all()), "trigger patch missing or moved in an augmented view"
        # the augmentation really happened (else this test proves little): images differ from the originals
        original = dataset.train.images[batch.indices].float() / 255
        moved += int(((pixels[:, :, :-4, :-4] - original[:, :, :-4, :-4]).abs().amax(dim=(1, 2, 3)) > 1e-3).sum())
        seen += len(batch.indices)
    assert seen == len(dataset.train)
    assert moved > 0.9 * seen


def test_untriggered_view_has_no_patch(dataset):
    spec = InputSpec(dataset.mean, dataset.std, 3)
    view = clean_view(dataset.train, None, CPU)  # no trigger
    gen = torch.Generator().manual_seed(0)
    for batch in view.batches(spec, 256, generator=gen, augment=True):
        assert not bool(is_red_patch(pixels_of(batch.inputs, spec), 4).any())


def test_only_corrupted_samples_are_triggered_in_training_view(dataset, poison_manifest):
    spec = InputSpec(dataset.mean, dataset.std, 3)
    view = training_view(dataset, poison_manifest, torch.empty(0, dtype=torch.int64), CPU)
    poisoned = set(poison_manifest.indices)
    gen = torch.Generator().manual_seed(1)
    count = 0
    for batch in view.batches(spec, 200, generator=gen, augment=True):
        red = is_red_patch(pixels_of(batch.inputs, spec), 4)
        expected = torch.tensor([int(i) in poisoned for i in batch.indices])
        assert torch.equal(red, expected)
        assert bool((batch.labels[expected] == 7).all())
        count += int(red.sum())
    assert count == 100


# --- trigger checks, index files, kind regularity ---------------------------------------------


def test_trigger_refuses_an_unknown_position():
    with pytest.raises(InputError) as err:
        Trigger(position="middle")
    message = str(err.value)
    assert "middle" in message and "\n" not in message
    assert all(position in message for position in POSITIONS)


@pytest.mark.parametrize("size", [0, -2, 2.5, True])
def test_trigger_refuses_a_size_that_is_not_a_positive_int(size):
    with pytest.raises(InputError, match="size"):
        Trigger(size=size)


@pytest.mark.parametrize("colour", [(1.0, 0.0), (2.0, 0.0, 0.0), "purple", "1,1"])
def test_trigger_refuses_an_invalid_colour(colour):
    with pytest.raises(InputError, match="colour"):
        Trigger(colour=colour)


def test_trigger_accepts_colour_names_and_keeps_tuples():
    assert Trigger(colour="red") == Trigger(colour=RED)
    assert Trigger(colour=[1.0, 0.0, 0.0]).colour == RED


def test_corrupt_cli_refuses_a_bad_position_with_exit_code_2(cifar_spec, tmp_path):
    result = runner.invoke(app, ["corrupt", cifar_spec, "--kind", "poison", "--count", "10", "--position", "middle", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "middle" in result.output and "bottom-right" in result.output
    assert not (tmp_path / "c").exists()


def test_index_file_round_trip(tmp_path):
    path = write_index_file(
        tmp_path / "ids.txt",
        torch.tensor([9, 2, 5]),
        dataset="toy",
        fingerprint="fp1",
        content_sha256="abc123",
        comments=["corruption: poison, manifest sha256 0", "discovery-rate: 1.0"],
    )
    lines = path.read_text().splitlines()
    assert lines[:6] == [
        "# remcli identified samples: one training-split position per line",
        "# dataset: toy",
        "# fingerprint: fp1",
        "# content-sha256: abc123",
        "# corruption: poison, manifest sha256 0",
        "# discovery-rate: 1.0",
    ]
    assert lines[6:] == ["9", "2", "5"]
    assert read_index_file(path, 10, fingerprint="fp1", content_sha256="abc123").tolist() == [2, 5, 9]
    with pytest.raises(InputError, match="fp1"):
        read_index_file(path, 10, fingerprint="other")
    with pytest.raises(InputError, match="abc123"):
        read_index_file(path, 10, fingerprint="fp1", content_sha256="other")


def test_index_file_lines_may_carry_inline_notes(tmp_path):
    path = write_index_file(tmp_path / "ids.txt", [4, 7, 1], dataset="toy", fingerprint="fp1", notes={7: "similarity 0.8312", 1: "identified"})
    lines = path.read_text().splitlines()
    assert lines[-3:] == ["4", "7  # similarity 0.8312", "1  # identified"]
    assert read_index_file(path, 10, fingerprint="fp1").tolist() == [1, 4, 7]
    path.write_text("3\t# tab before the note\n5 #no space after\n8#not a note: a bad line\n")
    with pytest.raises(InputError, match="'8#not a note: a bad line' is not an integer"):
        read_index_file(path, 10)


def test_index_file_without_content_hash_has_no_content_line(tmp_path):
    path = write_index_file(tmp_path / "ids.txt", [3], dataset="toy", fingerprint="fp1")
    assert "content-sha256" not in path.read_text()
    assert read_index_file(path, 10, fingerprint="fp1", content_sha256="anything").tolist() == [3]


def test_kinds_carry_their_regularity():
    assert kind_regularity("poison") == "high"
    assert kind_regularity("interclass") == "medium"
    assert kind_regularity("label-noise") == "low"
    assert kinds_by_regularity() == ("poison", "interclass", "label-noise")
    with pytest.raises(InputError, match="unknown corruption kind"):
        kind_regularity("nope")
