"""Unlearning: the method protocol and registry, REM's machinery, and `unlearn()`."""

from remcli.unlearning import methods  # noqa: F401  (registers every method)
from remcli.unlearning.base import (
    MethodInfo,
    MethodResult,
    UnlearnTask,
    get_method,
    list_methods,
    register_method,
)
from remcli.unlearning.run import UnlearnOutcome, build_task, unlearn

__all__ = ["MethodInfo", "UnlearnOutcome", "MethodResult", "UnlearnTask", "build_task", "get_method", "list_methods", "register_method", "unlearn"]
