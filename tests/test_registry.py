"""The one registry type: duplicates refused at registration, registration order kept, unknown
names refused in one line that lists the valid ones."""

from __future__ import annotations

import pytest

from remcli.errors import InputError
from remcli.registry import Registry


def test_names_keep_registration_order_and_entries_keep_their_metadata():
    colours = Registry[int]("colour")
    colours.add("red", 1, warm=True)

    @colours.register("blue", warm=False)
    def _blue():
        return 2

    assert colours.names() == ("red", "blue")
    assert colours.get("red") == 1 and colours.get("blue") is _blue
    assert colours.meta("red")["warm"] is True and colours.meta("blue")["warm"] is False
    assert "red" in colours and "green" not in colours


def test_a_name_registered_twice_is_refused():
    colours = Registry[int]("colour")
    colours.add("red", 1)
    with pytest.raises(ValueError, match="colour 'red' registered twice"):
        colours.add("red", 2)
    assert colours.get("red") == 1


def test_an_unknown_name_lists_the_registered_ones_in_one_line():
    colours = Registry[int]("colour", hint="see `remcli colours`")
    colours.add("red", 1)
    colours.add("blue", 2)
    with pytest.raises(InputError) as err:
        colours.get("green")
    assert str(err.value) == "unknown colour 'green'; choose from red, blue (see `remcli colours`)"
    assert err.value.exit_code == 2
