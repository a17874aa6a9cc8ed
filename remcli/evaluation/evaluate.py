"""`remcli evaluate`: the corrective metrics of one checkpoint, as an `Evaluation`.

* test_acc: clean test accuracy.
* utility: test accuracy, without the two swapped classes for interclass (paper's Utility).
* healed: accuracy against the TRUE labels on all corrupted training samples; for poison the
  samples carry the trigger, so healed = the backdoor no longer fires on them. Split into
  identified / undiscovered when an index file is given. (The research code measured poison
  healing on a shuffled loader, i.e. on random triggered training images; here it is measured on
  the corrupted samples themselves.)
* attack_success_rate, triggered_test_acc (poison only).
* utility_x_healed.
* identified_corrupted_acc: accuracy on the identified set against its corrupted labels
  (what REM's flush drives below gamma).
* corrupted_label_acc: accuracy on ALL corrupted training samples against their corrupted labels
  (triggered for poison): how much of the corruption the model has memorised. The paper's
  models are at ~0.99; unlearning comparisons are only meaningful where this is high.
* NAME_acc: accuracy on each extra labelled set (`evaluate --eval-set NAME=FOLDER`), such as the
  user's own triggered images labelled with their true classes.
* NAME_wrong: the share of an unlabelled query set (`--eval-set 'NAME=PATH?wrong=LABEL'`, images
  that misbehaved) still predicted as the wrong label: what `detect --query` started from, gated
  with a ceiling to check that unlearning stopped it.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass

import torch

from remcli import __version__
from remcli.checkpoints import Checkpoint
from remcli.data.datasets import Dataset, Split
from remcli.data.manifest import Manifest
from remcli.data.views import as_trained_view, clean_view
from remcli.engine import predict, resolve_device, resolve_precision
from remcli.errors import InputError
from remcli.evaluation.metrics import (
    accuracy,
    attack_success_rate,
    product,
    utility_mask,
)
from remcli.models import input_spec

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate()` measured on one checkpoint: what was evaluated, the metrics (module
    docstring) and their sample counts. `as_dict()` is the `evaluate --json` report and a sweep
    cell's `evaluation` record."""

    checkpoint: str | None
    checkpoint_sha256: str | None
    arch: str | None
    dataset: str
    test_split: str
    corruption: dict | None
    discovery_rate: float | None
    metrics: dict[str, float | None]
    counts: dict[str, int]
    wall_time_s: float

    def as_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "remcli_version": __version__, **asdict(self)}


def evaluate(
    checkpoint: Checkpoint,
    dataset: Dataset,
    manifest: Manifest | None = None,
    identified: torch.Tensor | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    eval_sets: dict[str, Split] | None = None,
    wrong_sets: dict[str, tuple[Split, int]] | None = None,
) -> Evaluation:
    """The corrective metrics of `checkpoint` (what each means: the module docstring) with their
    sample counts."""
    start = time.perf_counter()
    dev = resolve_device(device)
    precision = resolve_precision("auto", dev, cpu_bf16=False)  # metrics in fp32 on CPUs: exact and comparable across machines
    model = checkpoint.build().to(dev).to(memory_format=torch.channels_last).eval()
    spec = input_spec(dataset, checkpoint.arch or "")

    def preds_of(view):
        return predict(model, view.batches(spec, batch_size), precision).cpu()

    test = clean_view(dataset.test, None, dev)
    test_preds = preds_of(test)
    test_labels = dataset.test.labels
    metrics: dict[str, float | None] = {"test_acc": accuracy(test_preds, test_labels)}
    excluded = tuple(manifest.params.get("classes", ())) if manifest else ()  # the classes a kind swaps (interclass's `classes`)
    metrics["utility"] = accuracy(test_preds, test_labels, utility_mask(test_labels, excluded))

    counts: dict[str, int] = {"test": len(test_labels)}
    if manifest is not None:
        trigger = manifest.trigger_spec
        corrupted = manifest.index_tensor
        true = torch.tensor(manifest.true_labels)
        corrupted_preds = preds_of(clean_view(dataset.train, corrupted, dev, trigger))
        metrics["healed"] = accuracy(corrupted_preds, true)
        as_trained = as_trained_view(dataset, manifest, corrupted, dev)
        metrics["corrupted_label_acc"] = accuracy(preds_of(as_trained), as_trained.labels.cpu())
        counts["corrupted"] = len(corrupted)
        if trigger is not None:
            target = int(manifest.params.get("target", manifest.new_labels[0]))
            triggered_preds = preds_of(clean_view(dataset.test, None, dev, trigger))
            metrics["attack_success_rate"] = attack_success_rate(triggered_preds, test_labels, target)
            metrics["triggered_test_acc"] = accuracy(triggered_preds, test_labels)
        metrics["utility_x_healed"] = product(metrics["utility"], metrics["healed"])
        if identified is not None:
            is_identified = torch.isin(corrupted, identified)
            metrics["healed_identified"] = accuracy(corrupted_preds, true, is_identified)
            metrics["healed_undiscovered"] = accuracy(corrupted_preds, true, ~is_identified)
            counts["identified_corrupted"] = int(is_identified.sum())
            counts["undiscovered"] = int((~is_identified).sum())
            # how good the forget list itself is (a `remcli detect` candidate list, say)
            metrics["forget_precision"] = int(is_identified.sum()) / max(len(identified), 1)
            metrics["forget_recall"] = int(is_identified.sum()) / max(len(corrupted), 1)
    if identified is not None:
        view = as_trained_view(dataset, manifest, identified, dev)
        metrics["identified_corrupted_acc"] = accuracy(preds_of(view), view.labels.cpu())
        counts["identified"] = len(identified)

    for name, split in (eval_sets or {}).items():
        if tuple(split.images.shape[1:]) != tuple(dataset.input_shape):
            raise InputError(
                f"--eval-set {name}: images are {tuple(split.images.shape[1:])} (C,H,W) but the model takes {tuple(dataset.input_shape)}; "
                f"add ?size={dataset.input_shape[-1]} to its folder to resize"
            )
        metrics[f"{name}_acc"] = accuracy(preds_of(clean_view(split, None, dev)), split.labels)
        counts[name] = len(split)
    for name, (split, wrong) in (wrong_sets or {}).items():  # shapes checked when loaded (data.queries)
        metrics[f"{name}_wrong"] = float((preds_of(clean_view(split, None, dev)) == wrong).float().mean())
        counts[name] = len(split)

    return Evaluation(
        checkpoint=str(checkpoint.path) if checkpoint.path else None,
        checkpoint_sha256=checkpoint.sha256,
        arch=checkpoint.arch,
        dataset=dataset.spec,
        test_split=dataset.test_split,
        corruption=None if manifest is None else {"kind": manifest.kind, "count": len(manifest.indices), "seed": manifest.seed},
        discovery_rate=None
        if identified is None or manifest is None
        else round(counts.get("identified_corrupted", 0) / max(len(manifest.indices), 1), 4),
        metrics={k: (None if v is None else round(v, 6)) for k, v in metrics.items()},
        counts=counts,
        wall_time_s=round(time.perf_counter() - start, 3),
    )


def compare(result: dict, baseline: dict, is_parent: bool | None = None) -> dict:
    """The report `result` (`Evaluation.as_dict()`) with `baseline`'s metrics beside it, for gates
    on the change rather than the level.

    Every metric measured in both becomes `delta_NAME` = result - baseline among the metrics (so
    `--gate 'delta_test_acc>=-0.02'` gates a drop of at most two points), and `against` records the
    baseline checkpoint, its sha256, its metrics and whether it is the checkpoint `result`'s was
    made from (`is_parent`, from the recorded history; None when unknown).
    """
    deltas = {
        f"delta_{name}": round(value - baseline["metrics"][name], 6)
        for name, value in result["metrics"].items()
        if value is not None and baseline["metrics"].get(name) is not None
    }
    against = {
        "checkpoint": baseline["checkpoint"],
        "checkpoint_sha256": baseline["checkpoint_sha256"],
        "is_parent": is_parent,
        "metrics": baseline["metrics"],
    }
    return {**result, "metrics": {**result["metrics"], **deltas}, "against": against}


GATE_EXAMPLE = "utility>=0.8,attack_success_rate<=0.05"
_GATE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|=)\s*(\S.*?)\s*")


@dataclass(frozen=True)
class Gate:
    """One CI gate on a metric: `metric >= limit` (a floor) or `metric <= limit` (a ceiling)."""

    metric: str
    op: str  # ">=" or "<="
    limit: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit}"

    def passes(self, value: float | None) -> bool:
        if value is None:  # a metric that could not be measured never passes a gate
            return False
        return value >= self.limit if self.op == ">=" else value <= self.limit


def parse_gates(text: str, option: str = "--gate") -> list[Gate]:
    """`utility>=0.8,attack_success_rate<=0.05` -> gates. `name=value` means `name>=value`.

    Empty parts are skipped; a malformed part, a NaN limit or the same metric and direction
    twice is an InputError naming `option`.
    """
    gates: list[Gate] = []
    seen: set[tuple[str, str]] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _GATE.fullmatch(part)
        limit = None
        if match:
            try:
                limit = float(match.group(3))
            except ValueError:
                limit = None
        if limit is None or math.isnan(limit):  # NaN could never fail (or pass) a gate
            raise InputError(
                f"{option} {part!r} is not a gate; write NAME>=VALUE or NAME<=VALUE (NAME=VALUE means >=), comma-separated, e.g. '{GATE_EXAMPLE}'"
            )
        op = ">=" if match.group(2) == "=" else match.group(2)
        key = (match.group(1), op)
        if key in seen:
            raise InputError(f"{option} gives {match.group(1)}{op} twice; keep one limit per metric and direction")
        seen.add(key)
        gates.append(Gate(match.group(1), op, limit))
    return gates


# Metrics measured only with a forget list, or only with a corruption manifest (see `evaluate`).
FORGET_METRICS = ("identified_corrupted_acc", "healed_identified", "healed_undiscovered", "forget_precision", "forget_recall")
CORRUPTION_METRICS = ("healed", "corrupted_label_acc", "utility_x_healed", *FORGET_METRICS[1:])


def _missing_inputs(metric: str, result: dict) -> list[str]:
    """What the evaluation lacked to measure `metric` (a known name it did not report), e.g. ['--forget FILE']."""
    base = metric.removeprefix("delta_")
    needs = []
    if base in FORGET_METRICS and "identified" not in result.get("counts", {}):
        needs.append("--forget FILE (the identified samples)")
    if base in CORRUPTION_METRICS and result.get("corruption") is None:
        needs.append("a corruption manifest (--corruption, or a checkpoint trained with one)")
    if metric != base and "against" not in result:
        needs.append("--against BASELINE")
    return needs


def missed_gates(result: dict, gates: list[Gate], option: str = "--gate") -> list[str]:
    """One `name=value < limit` (floor) or `name=value > limit` (ceiling) per missed gate.

    Unknown metric names are an InputError listing the available ones.
    """
    missed = []
    for gate in gates:
        if gate.metric not in result["metrics"]:
            needs = _missing_inputs(gate.metric, result)
            if needs:
                raise InputError(f"{option} on {gate.metric} needs {' and '.join(needs)}, which this evaluation lacks; pass it or drop the gate")
            raise InputError(f"{option} names unknown metric {gate.metric!r}; available: {', '.join(result['metrics'])}")
        value = result["metrics"][gate.metric]
        if not gate.passes(value):
            missed.append(f"{gate.metric}={value} {'<' if gate.op == '>=' else '>'} {gate.limit}")
    return missed


def gates_summary(gates: list[Gate], missed: list[str]) -> dict:
    """The `thresholds` entry of `evaluate --json`: floors under `required` (as before), ceilings under `at_most`."""
    return {
        "required": {g.metric: g.limit for g in gates if g.op == ">="},
        "at_most": {g.metric: g.limit for g in gates if g.op == "<="},
        "missed": missed,
    }
