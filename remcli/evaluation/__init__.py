"""Evaluation: pure metric functions and `evaluate()` for a checkpoint, which returns an `Evaluation`."""

from remcli.evaluation.evaluate import (
    Evaluation,
    Gate,
    compare,
    evaluate,
    gates_summary,
    missed_gates,
    parse_gates,
)

__all__ = ["Evaluation", "Gate", "compare", "evaluate", "gates_summary", "missed_gates", "parse_gates"]
