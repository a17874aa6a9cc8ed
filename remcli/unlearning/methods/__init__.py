"""Unlearning methods, one module each; importing this package registers them all."""

from remcli.unlearning.methods import rem  # noqa: F401
