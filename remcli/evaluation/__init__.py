"""Evaluation: pure metric functions and `evaluate()` for a checkpoint."""

from remcli.evaluation.evaluate import (
    Gate,
    compare,
    evaluate,
    gates_summary,
    missed_gates,
    parse_gates,
)

__all__ = ["Gate", "compare", "evaluate", "gates_summary", "missed_gates", "parse_gates"]
