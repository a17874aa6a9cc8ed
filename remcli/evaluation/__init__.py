"""Evaluation: pure metric functions and `evaluate()` for a checkpoint."""

from remcli.evaluation.evaluate import evaluate, missed_thresholds, parse_thresholds

__all__ = ["evaluate", "missed_thresholds", "parse_thresholds"]
