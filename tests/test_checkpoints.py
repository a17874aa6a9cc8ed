"""safetensors checkpoints: metadata round trip, plain-torchvision loading, safe .pt import, inspect."""

from __future__ import annotations

import json
import pickle

import pytest
import safetensors.torch
import torch
import torchvision
from typer.testing import CliRunner

from remcli.checkpoints import (
    Checkpoint,
    import_state_dict,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from remcli.cli.main import app
from remcli.errors import InputError
from remcli.fileio import sha256_file
from remcli.models import build_model
from remcli.seeding import seeded_global_rng

runner = CliRunner()


def tiny_resnet9(seed: int = 0) -> torch.nn.Module:
    with seeded_global_rng(seed, "test/init"):
        return build_model("resnet9", 10, width=0.25)


def full_meta(arch: str = "resnet9", arch_kwargs: dict | None = None) -> dict:
    return {
        "arch": arch,
        "arch_kwargs": {"width": 0.25} if arch_kwargs is None else arch_kwargs,
        "num_classes": 10,
        "input_shape": [3, 32, 32],
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.247, 0.2435, 0.2616],
        "dataset": "imagefolder:/somewhere",
        "dataset_fingerprint": "sha256:0123",
        "corruption_sha256": None,
        "validation": {"seed": 3, "fraction": 0.05, "indices": [4, 8, 15]},
        "history": [
            {"command": "train", "params": {"epochs": 1, "lr": 0.05}, "seed": 3},
            {"command": "unlearn", "params": {"method": "rem"}, "seed": 4, "parent_sha256": "ab" * 32},
        ],
    }


# --- round trip --------------------------------------------------------------------------------


def test_round_trip_tensors_and_metadata(tmp_path):
    model = tiny_resnet9()
    path = tmp_path / "m.safetensors"
    sha = save_checkpoint(path, model.state_dict(), full_meta())
    assert sha == sha256_file(path)

    ckpt = load_checkpoint(path)
    assert ckpt.sha256 == sha and ckpt.path == path
    state = model.state_dict()
    assert set(ckpt.state_dict) == set(state)
    for key, value in state.items():
        assert torch.equal(ckpt.state_dict[key], value), key

    meta = ckpt.meta
    assert meta["format"] == "pt" and meta["remcli_version"]
    # JSON-encoded keys come back as structures, not strings
    assert meta["arch_kwargs"] == {"width": 0.25}
    assert meta["input_shape"] == [3, 32, 32]
    assert meta["mean"] == [0.4914, 0.4822, 0.4465]
    assert meta["validation"] == {"seed": 3, "fraction": 0.05, "indices": [4, 8, 15]}
    assert isinstance(meta["history"], list) and [h["command"] for h in meta["history"]] == ["train", "unlearn"]
    assert meta["history"][1]["parent_sha256"] == "ab" * 32
    # scalar keys are strings in the header; the typed accessors convert
    assert meta["num_classes"] == "10" and ckpt.num_classes == 10
    assert meta["corruption_sha256"] == ""
    assert ckpt.arch == "resnet9"
    assert ckpt.history == meta["history"]
    assert ckpt.validation_indices.tolist() == [4, 8, 15]
    assert read_metadata(path) == meta  # header-only read agrees

    rebuilt = ckpt.build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))


def test_save_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, tiny_resnet9(0).state_dict(), full_meta())
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        save_checkpoint(path, tiny_resnet9(1).state_dict(), full_meta())
    assert path.read_bytes() == before
    save_checkpoint(path, tiny_resnet9(1).state_dict(), full_meta(), force=True)
    assert path.read_bytes() != before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "atomic write left a temporary file"


def test_checkpoint_without_metadata_cannot_build(tmp_path):
    path = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in tiny_resnet9().state_dict().items()}, str(path))
    ckpt = load_checkpoint(path)
    assert ckpt.arch is None and ckpt.num_classes is None and ckpt.history == []
    with pytest.raises(InputError, match="--arch"):
        ckpt.build()


# --- plain torchvision loading ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_checkpoint_loads_into_plain_torchvision(tmp_path, arch):
    with seeded_global_rng(0, "test/tv"):
        model = build_model(arch, 10)
    path = tmp_path / f"{arch}.safetensors"
    save_checkpoint(path, model.state_dict(), full_meta(arch, {}))

    plain = torchvision.models.get_model(arch, num_classes=10)
    result = plain.load_state_dict(safetensors.torch.load_file(str(path)))  # strict=True by default
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), model.eval()(x))
    assert load_checkpoint(path).meta["arch"] == arch


# --- import of legacy pickles ------------------------------------------------------------------


def test_import_state_dict_reads_torch_save(tmp_path):
    state = tiny_resnet9().state_dict()
    path = tmp_path / "w.pth"
    torch.save(state, path)
    loaded = import_state_dict(path)
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_import_state_dict_unwraps_containers_and_dataparallel_prefix(tmp_path):
    state = tiny_resnet9().state_dict()
    path = tmp_path / "w.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = import_state_dict(path)
    assert set(loaded) == set(state)


def test_import_refuses_pickled_full_model(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(tiny_resnet9(), path)
    with pytest.raises(InputError, match="not a loadable weights-only"):
        import_state_dict(path)


def test_import_refuses_dict_of_non_tensors(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"weights": [1, 2, 3], "name": "x"}, path)
    with pytest.raises(InputError, match="does not hold a state_dict of tensors"):
        import_state_dict(path)


class _Payload:
    """A pickle that would create a file if it were ever unpickled with the full unpickler."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_import_never_executes_pickled_code(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control), protocol=2)).close()
    assert control.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump(_Payload(marker), handle, protocol=2)
    with pytest.raises(InputError):
        import_state_dict(path)
    assert not marker.exists(), "import_state_dict executed code from the pickle"


def test_import_cli_converts_pth_to_safetensors(tmp_path):
    model = tiny_resnet9()
    source = tmp_path / "w.pth"
    torch.save(model.state_dict(), source)
    out = tmp_path / "w.safetensors"
    result = runner.invoke(app, ["import", str(source), "--arch", "resnet9", "--num-classes", "10", "--arch-arg", "width=0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "imported" in result.stderr
    tensors = safetensors.torch.load_file(str(out))
    assert set(tensors) == set(model.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    ckpt = load_checkpoint(out)
    assert ckpt.arch == "resnet9" and ckpt.num_classes == 10 and ckpt.meta["arch_kwargs"] == {"width": 0.25}
    assert ckpt.meta["input_shape"] == [3, 32, 32]
    assert ckpt.history[0]["command"] == "import" and ckpt.history[0]["parent_sha256"] == sha256_file(source)
    ckpt.build()


def test_import_cli_rejects_weights_that_do_not_fit_the_arch(tmp_path):
    source = tmp_path / "w.pth"
    torch.save(tiny_resnet9().state_dict(), source)
    out = tmp_path / "w.safetensors"
    # width 0.5 expects other shapes than the width-0.25 weights
    result = runner.invoke(app, ["import", str(source), "--arch", "resnet9", "--num-classes", "10", "--arch-arg", "width=0.5", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "does not fit arch resnet9" in result.stderr
    assert not out.exists()


def test_import_cli_refuses_full_model_pickle(tmp_path):
    source = tmp_path / "model.pth"
    torch.save(tiny_resnet9(), source)
    out = tmp_path / "w.safetensors"
    result = runner.invoke(app, ["import", str(source), "--arch", "resnet9", "--num-classes", "10", "--arch-arg", "width=0.25", "--out", str(out)])
    assert result.exit_code == 2
    assert "weights-only" in result.stderr
    assert not out.exists()


# --- inspect -----------------------------------------------------------------------------------


def test_inspect_prints_provenance(poisoned_run):
    model = poisoned_run / "model.safetensors"
    meta = read_metadata(model)
    result = runner.invoke(app, ["inspect", str(model)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "resnet9" in out
    assert meta["dataset_fingerprint"] in out
    assert meta["corruption_sha256"] and meta["corruption_sha256"] in out
    assert "1. train" in out
    assert f"'count': {len(meta['validation']['indices'])}" in out


def test_inspect_json_to_stdout_is_one_json_object(poisoned_run):
    model = poisoned_run / "model.safetensors"
    result = runner.invoke(app, ["inspect", str(model), "--json", "-"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # fails if a table or anything else is on stdout
    meta = read_metadata(model)
    assert summary["arch"] == "resnet9"
    assert summary["arch_kwargs"] == {"width": 0.25}
    assert summary["dataset_fingerprint"] == meta["dataset_fingerprint"]
    assert [h["command"] for h in summary["history"]] == ["train"]
    assert "indices" not in summary["validation"]
    assert summary["validation"]["count"] == len(meta["validation"]["indices"])
    assert "blocks" not in summary


def test_inspect_blocks_lists_every_parameterised_block(poisoned_run):
    model_path = poisoned_run / "model.safetensors"
    result = runner.invoke(app, ["inspect", str(model_path), "--blocks", "--json", "-"])
    assert result.exit_code == 0, result.output
    blocks = json.loads(result.stdout)["blocks"]
    model = load_checkpoint(model_path).build()
    modules = dict(model.named_modules())
    assert blocks and all(b in modules for b in blocks)
    assert blocks[-1] == "fc" and blocks[0].startswith("conv1")
    # every parameter belongs to exactly one listed block
    for name, _ in model.named_parameters():
        owners = [b for b in blocks if name.startswith(b + ".")]
        assert len(owners) == 1, (name, owners)

    text = runner.invoke(app, ["inspect", str(model_path), "--blocks"], env={"COLUMNS": "400"})
    assert text.exit_code == 0
    assert "blocks (in forward order): " + ", ".join(blocks) in text.stdout


def test_inspect_blocks_of_torchvision_resnet18(tmp_path):
    with seeded_global_rng(0, "test/tv"):
        model = build_model("resnet18", 10)
    path = tmp_path / "r18.safetensors"
    save_checkpoint(path, model.state_dict(), full_meta("resnet18", {}))
    result = runner.invoke(app, ["inspect", str(path), "--blocks", "--json", "-"])
    assert result.exit_code == 0, result.output
    expected = ["conv1", "bn1"] + [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)] + ["fc"]
    assert json.loads(result.stdout)["blocks"] == expected


def test_checkpoint_dataclass_build_checks_shapes():
    state = tiny_resnet9().state_dict()
    ckpt = Checkpoint(state, {"arch": "resnet9", "num_classes": "10", "arch_kwargs": {"width": 0.5}, "input_shape": [3, 32, 32]})
    with pytest.raises(InputError, match=r"has shape .* expected"):
        ckpt.build()


def test_outputs_get_ordinary_file_permissions(tmp_path):
    """Atomic writes go through an owner-only temporary file; the result must not stay 0600."""
    import os
    import stat

    from remcli.fileio import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_checkpoint(tmp_path / "m.safetensors", {"w": torch.zeros(2)}, {"arch": "resnet9"})
    finally:
        os.umask(old)
    for name in ("a.txt", "m.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_torchvision_vit_rebuilds_from_its_recorded_arguments():
    """A ViT records image_size among its constructor arguments; rebuilding it (import, train,
    unlearn and evaluate all do) must not pass the size twice (it did: TypeError for every ViT)."""
    from remcli.checkpoints import Checkpoint
    from remcli.models import resolve_arch_kwargs

    kwargs = resolve_arch_kwargs("vit_b_16", 32, {})
    assert kwargs == {"image_size": 32}
    meta = {"arch": "vit_b_16", "arch_kwargs": kwargs, "num_classes": 3, "input_shape": [3, 32, 32]}
    model = Checkpoint(state_dict={}, meta=meta).build_untrained()
    assert model.image_size == 32 and model.heads.head.out_features == 3
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_non_finite_weights_are_never_written(tmp_path):
    """A diverged run (NaN or inf anywhere) must not become a checkpoint: exit code 1, no file."""
    from remcli.checkpoints import save_checkpoint
    from remcli.errors import ResultError

    state = {"a": torch.ones(3), "b": torch.tensor([1.0, float("nan")]), "steps": torch.tensor([7])}
    path = tmp_path / "diverged.safetensors"
    with pytest.raises(ResultError, match="NaN or inf") as err:
        save_checkpoint(path, state, {})
    assert err.value.exit_code == 1 and "b" in str(err.value) and "--lr" in str(err.value)
    assert not path.exists() and not list(tmp_path.iterdir())
    state["b"] = torch.tensor([1.0, float("inf")])
    with pytest.raises(ResultError):
        save_checkpoint(path, state, {})
    state["b"] = torch.tensor([1.0, 2.0])
    save_checkpoint(path, state, {})
    assert path.exists()


def test_rem_diagnostics_table_shows_each_iteration_and_marks_the_kept_one():
    """`remcli inspect`'s REM table: one row per outer iteration, the kept iterate starred, the
    per-iteration seconds among the columns; other methods' logs get no table."""
    from rich.console import Console

    from remcli.cli.commands.inspect import DIAGNOSTIC_COLUMNS, rem_diagnostics_table

    def iteration(i: int) -> dict:
        it = {key: round(0.1 * i + 0.01 * n, 3) for n, (key, _) in enumerate(DIAGNOSTIC_COLUMNS)}
        return it | {"iteration": i, "redirecting": i == 2, "flush_steps": i, "repair_s": 3.25 + i}

    table = rem_diagnostics_table({"best_iteration": 1, "iterations": [iteration(i) for i in range(3)]})
    console = Console(width=400, record=True)
    console.print(table)
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["0", "1*", "2"]
    assert "repair s" in text and "5.25" in rows[2] and rows[2].count("yes") == 1 and "yes" not in rows[1]
    assert rem_diagnostics_table({"iterations": [{"iteration": 0, "forget_acc": 0.5}]}) is None
