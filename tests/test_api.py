"""The Python API: `remcli` exports each pipeline step and the artefact it returns, and importing
the package alone loads nothing else (it sits at the bottom of the layering, docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import remcli


def test_every_export_resolves_to_the_library_object():
    for name in remcli.__all__:
        value = getattr(remcli, name)
        if name != "__version__":
            assert value.__module__.startswith("remcli.") and value.__name__ == name, name
    assert set(remcli.__all__) <= set(dir(remcli))


def test_every_export_has_a_docstring():
    """A dataclass without one gets its signature as __doc__; that says nothing about what it is."""
    for name in remcli.__all__[1:]:
        doc = getattr(remcli, name).__doc__ or ""
        assert doc.strip() and not doc.startswith(f"{name}("), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="train_modle"):
        remcli.train_modle  # noqa: B018 - the lookup is the test


def test_importing_remcli_loads_no_other_module():
    code = "import sys, remcli; remcli.__version__; print(sorted(m for m in sys.modules if m.startswith(('remcli.', 'torch'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
