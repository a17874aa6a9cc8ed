"""safetensors checkpoints with provenance metadata.

The tensors are the model's plain `state_dict`, so a torchvision checkpoint loads with
`get_model(arch, num_classes=K).load_state_dict(safetensors.torch.load_file(path))`.
The metadata (a flat str -> str map; nested values JSON-encoded) says how to rebuild the
model and how it came to be:

    format                 "pt" (Hugging Face convention)
    remcli_version         version that wrote the file
    arch, arch_kwargs      architecture name and constructor arguments (JSON)
    num_classes            int
    input_shape            [C, H, W] of the data (JSON)
    mean, std              normalisation applied to [0,1] pixels (JSON)
    classes                the dataset's class names in label order (JSON; absent in older files)
    dataset, dataset_fingerprint
    dataset_content_sha256 sha256 of the decoded training images (absent in older files): catches
                           the same labels on other or reordered images
    corruption_sha256      sha256 of the corruption manifest trained on ("" if none)
    validation             {"seed", "fraction", "indices"} held out from training (JSON)
    history                list of steps that produced the file (JSON): command, parameters,
                           seed, wall time, versions, device, parent sha256

Pickles are never loaded implicitly: `.pt/.pth` files come in only through `import_state_dict`,
which uses `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from remcli import __version__
from remcli.errors import InputError, ResultError
from remcli.fileio import atomic_path, check_writable_output, sha256_file, write_failure
from remcli.models import build_model, model_channels
from remcli.models.blocks import classifier_keys

_JSON_KEYS = ("arch_kwargs", "input_shape", "mean", "std", "classes", "validation", "history")


@dataclass
class Checkpoint:
    """A model's tensors and remcli's metadata about it (arch, data, corruption, validation split,
    history): what every step after `train` reads. `path` and `sha256` are set when it came from a file."""

    state_dict: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    # --- what the metadata says ------------------------------------------------------------
    @property
    def arch(self) -> str | None:
        return self.meta.get("arch")

    @property
    def num_classes(self) -> int | None:
        value = self.meta.get("num_classes")
        return None if value is None else int(value)

    @property
    def history(self) -> list[dict]:
        return list(self.meta.get("history", []))

    @property
    def init(self) -> dict | None:
        """The checkpoint the last `train` started from (`train --init`: path, sha256...), or None for a fresh initialisation."""
        entries = [e for e in self.history if e.get("command") == "train"]
        return entries[-1].get("init") if entries else None

    @property
    def validation_indices(self) -> torch.Tensor:
        return torch.tensor(self.meta.get("validation", {}).get("indices", []), dtype=torch.int64)

    @property
    def train_params(self) -> dict:
        """The settings of the last `train` in the history (epochs, batch size, lr...), or {}."""
        entries = [e for e in self.history if e.get("command") == "train"]
        return dict(entries[-1].get("params", {})) if entries else {}

    def build_untrained(self) -> nn.Module:
        """The architecture with its constructor's fresh initialisation (global RNG: seed it first)."""
        if not self.arch or self.num_classes is None:
            raise InputError(f"checkpoint {self.path} records no arch/num_classes; pass --arch and --num-classes")
        shape = self.meta.get("input_shape") or [3, 32, 32]
        return build_model(
            self.arch, self.num_classes, in_channels=model_channels(self.arch, shape[0]), input_size=shape[-1], **self.meta.get("arch_kwargs", {})
        )

    def build(self) -> nn.Module:
        """Rebuild the module and load the weights, checking names and shapes first."""
        model = self.build_untrained()
        check_state_dict_matches(model, self.state_dict, f"checkpoint {self.path}", self.arch)
        model.load_state_dict(self.state_dict)
        return model


def check_state_dict_matches(model: nn.Module, state: dict[str, torch.Tensor], what: str, arch: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or extra:
        raise InputError(f"{what} does not fit arch {arch}: missing {missing[:3]}, unexpected {extra[:3]}; pass the arch it was trained with")
    for key, shape in expected.items():
        if got[key] != shape:
            raise InputError(
                f"{what} does not fit arch {arch}: {key} has shape {list(got[key])}, expected {list(shape)}; check --arch, --num-classes "
                "and --arch-arg"
            )


def check_init_arch(path: str | Path, init_arch: str | None, arch: str) -> None:
    """Fine-tuning keeps the architecture: the init must be a checkpoint of `arch`."""
    if not init_arch:
        raise InputError(f"--init {path} records no arch (not a remcli checkpoint); bring its weights in with `remcli import` first")
    if init_arch != arch:
        raise InputError(f"--init {path} is a {init_arch} checkpoint, not {arch}; fine-tuning keeps the architecture: pass --arch {init_arch}")


def load_init_weights(model: nn.Module, init: Checkpoint, arch: str) -> list[str]:
    """Copy `init`'s weights into `model`, freshly built for the data it will be trained on.

    Fine-tuning keeps everything the init learned; only a classifier whose class count differs
    from the init's cannot carry over, so it keeps its fresh initialisation, as fine-tuning a
    pretrained backbone does. Returns the keys so re-initialised ([] when the class counts agree).
    Any other mismatch (arch, width) is an InputError naming the init."""
    check_init_arch(init.path, init.arch, arch)
    state, given = model.state_dict(), init.state_dict
    differ = [key for key in state if key in given and given[key].shape != state[key].shape]
    head = classifier_keys(model)
    fresh = head if any(key in differ for key in head) else []
    wrong = [key for key in differ if key not in fresh]
    missing, extra = sorted(set(state) - set(given)), sorted(set(given) - set(state))
    if missing or extra or wrong:
        found = f"missing {missing[:3]}, unexpected {extra[:3]}"
        if wrong:
            found = f"{wrong[0]} has shape {list(given[wrong[0]].shape)}, expected {list(state[wrong[0]].shape)}"
        raise InputError(
            f"--init {init.path} ({arch} {init.meta.get('arch_kwargs') or {}}) does not fit this {arch}: {found}; pass the init's --width / "
            "--arch-arg values"
        )
    model.load_state_dict({key: state[key] if key in fresh else given[key] for key in state})
    return fresh


def load_recorded_init(record: dict, purpose: str = "retrain from it") -> Checkpoint:
    """The init a checkpoint's history says it was fine-tuned from, refused unless its sha256 still
    matches; `purpose` ends the error lines (what the file is needed for)."""
    path, sha = Path(record["path"]), record["sha256"]
    if not path.is_file():
        raise InputError(f"the init this model was fine-tuned from, {path} (sha256 {sha[:12]}), is missing; put that file back to {purpose}")
    init = load_checkpoint(path)
    if init.sha256 != sha:
        raise InputError(
            f"the init {path} has sha256 {init.sha256[:12]}, not the {sha[:12]} this model was fine-tuned from; put the original init back at {path} "
            f"to {purpose}"
        )
    return init


def history_entry(command: str, params: dict, seed: int | None, wall_time_s: float, device: str, parent_sha256: str | None = None, **extra) -> dict:
    return {
        "command": command,
        "params": params,
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "remcli_version": __version__,
        "torch_version": torch.__version__,
        "device": device,
        "host": platform.node(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parent_sha256": parent_sha256,
        **extra,
    }


def encode_metadata(meta: dict) -> dict[str, str]:
    out = {"format": "pt", "remcli_version": __version__}
    for key, value in meta.items():
        if key in ("format", "remcli_version"):
            continue
        out[key] = json.dumps(value) if key in _JSON_KEYS else ("" if value is None else str(value))
    return out


def decode_metadata(raw: dict[str, str] | None) -> dict:
    meta: dict = dict(raw or {})
    for key in _JSON_KEYS:
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError:
                raise InputError(f"checkpoint metadata field {key!r} is not valid JSON; re-save the checkpoint with remcli") from None
    return meta


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or inf, in state-dict order."""
    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def tensor_names(names: list[str], shown: int = 3) -> str:
    """`3 tensors (a, b, c)` or `40 tensors (a, b, c and 37 more)`: enough to find them, short enough for one line."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} tensor{'s' if len(names) != 1 else ''} ({', '.join(names[:shown])}{more})"


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict, force: bool = False, inputs: tuple = ()) -> str:
    """Write atomically; returns the sha256 of the written file."""
    out = check_writable_output(path, force, inputs)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    bad = non_finite_tensors(tensors)
    if bad:
        raise ResultError(f"NaN or inf values in {tensor_names(bad)}: the run diverged, so {out} was not written; lower --lr and rerun")
    with atomic_path(out) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=encode_metadata(meta))
        except SafetensorError as err:  # safetensors reports I/O failures (disk full, EFBIG) as its own error
            raise write_failure(out, err) from None
    return sha256_file(out)


def read_metadata(path: str | Path) -> dict:
    """Only the header: cheap, loads no tensors."""
    p = _existing(path)
    try:
        with safe_open(str(p), framework="pt") as handle:
            return decode_metadata(handle.metadata())
    except (SafetensorError, OSError, ValueError) as err:
        raise _not_safetensors(p, err) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", check_finite: bool = True) -> Checkpoint:
    """Read a checkpoint. Non-finite weights are refused here (exit 1), for every command at once:
    such a model predicts one class everywhere, and its near-zero identified-set accuracy would
    pass for perfect forgetting and its chance-level scores for results. `check_finite=False` is
    for looking at the file only (`inspect`)."""
    p = _existing(path)
    try:
        with safe_open(str(p), framework="pt") as handle:
            raw = handle.metadata()
        state = load_file(str(p), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _not_safetensors(p, err) from None
    bad = non_finite_tensors(state) if check_finite else []
    if bad:
        raise ResultError(
            f"checkpoint {p} holds NaN or inf values in {tensor_names(bad)}, so its predictions mean nothing; "
            "use the checkpoint it was made from, or retrain"
        )
    return Checkpoint(state_dict=state, meta=decode_metadata(raw), path=p, sha256=sha256_file(p))


def import_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a legacy `.pt/.pth` state dict safely (weights_only); unwraps common containers; refuses non-finite weights."""
    p = _existing(path)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError/RuntimeError/EOFError variously
        raise InputError(
            f"{p} is not a loadable weights-only PyTorch file ({err.__class__.__name__}); export a plain state_dict with "
            "torch.save(model.state_dict(), path)"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{p} does not hold a state_dict of tensors; save model.state_dict() instead of the model")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    bad = non_finite_tensors(state)
    if bad:  # refused before any checkpoint is written; save_checkpoint's advice (lower --lr) fits a run, not an import
        raise ResultError(
            f"{p} holds NaN or inf values in {tensor_names(bad)}: the source weights are broken (nothing was trained here), so nothing was "
            "written; export the weights of a model that predicts normally"
        )
    return state


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        problem = "is a directory, not a checkpoint file" if p.is_dir() else "is not a regular file" if p.exists() else "not found"
        raise InputError(f"checkpoint {p} {problem}; check the path")
    return p


def _not_safetensors(path: Path, err: Exception) -> InputError:
    hint = " (use `remcli import` for .pt/.pth files)" if path.suffix in (".pt", ".pth", ".bin", ".tar") else ""
    return InputError(f"{path} is not a readable safetensors file, it may be truncated or another format{hint}: {str(err)[:80]}")
