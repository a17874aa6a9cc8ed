"""remcli: remove the influence of corrupted training data from image classifiers.

The command line is a thin shell over this package. Each pipeline step is one function, which its
CLI command and `remcli sweep` both call, returning a typed artefact:

    step      function                                              artefact
    data      load_dataset(spec)                                    Dataset
    corrupt   corrupt_dataset(dataset, kind, count, seed)           Manifest; write_corruption writes it
    train     train_model(dataset, TrainConfig(...), manifest)      TrainResult; save_checkpoint writes it
    detect    detect(checkpoint, inputs, identified, top=N)         Detection
    unlearn   unlearn(checkpoint, inputs, identified, method)       UnlearnOutcome; save_checkpoint writes it
    evaluate  evaluate(checkpoint, dataset, manifest, identified)   Evaluation; .as_dict() is the `evaluate --json` report
    sweep     run_sweep(SweepConfig(...), DIR)                      SweepOutcome: all of the above over a grid

A checkpoint on disk is `load_checkpoint(path)` (a `Checkpoint`); `resolve_inputs(checkpoint, data,
corruption)` finds the data and corruption it records (`RunInputs`); `read_identified(path,
dataset)` reads an index file of identified samples.

The names are imported on first use (PEP 562): `import remcli`, and `remcli.__version__` which
every layer reads, load nothing else, so this module stays at the bottom of the layering
(docs/architecture.md) while exporting from the top of it.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "remcli.data.datasets",
    "load_dataset": "remcli.data.datasets",
    "Manifest": "remcli.data.manifest",
    "corrupt_dataset": "remcli.data.corruption",
    "write_corruption": "remcli.data.corruption",
    "Checkpoint": "remcli.checkpoints",
    "load_checkpoint": "remcli.checkpoints",
    "save_checkpoint": "remcli.checkpoints",
    "RunInputs": "remcli.inputs",
    "resolve_inputs": "remcli.inputs",
    "read_identified": "remcli.inputs",
    "TrainConfig": "remcli.train",
    "TrainResult": "remcli.train",
    "train_model": "remcli.train",
    "Detection": "remcli.detection",
    "detect": "remcli.detection",
    "UnlearnOutcome": "remcli.unlearning",
    "unlearn": "remcli.unlearning",
    "Evaluation": "remcli.evaluation",
    "evaluate": "remcli.evaluation",
    "SweepConfig": "remcli.sweep",
    "SweepOutcome": "remcli.sweep",
    "run_sweep": "remcli.sweep",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'remcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
