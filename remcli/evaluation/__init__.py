"""Evaluation: pure metric functions and `evaluate()` for a checkpoint."""

from remcli.evaluation.evaluate import (
    Gate,
    evaluate,
    gates_summary,
    missed_gates,
    parse_gates,
)

__all__ = ["Gate", "evaluate", "gates_summary", "missed_gates", "parse_gates"]
