"""One check for every artefact that records the data it was made from: a checkpoint, a
corruption manifest and an index file each record the training labels' fingerprint and (when
known) the training images' content hash, and each is refused, in the same words, when the data
in hand differs. Positions into other data would silently point at other samples."""

from __future__ import annotations

from remcli.errors import InputError


def check_made_for(
    what: str,
    verb: str,
    recorded: tuple[str | None, str | None],
    actual: tuple[str, str | None],
    spec: str,
    restore: str,
) -> None:
    """`what` (e.g. "checkpoint PATH") `verb` ("was trained on") data whose (fingerprint, content
    hash) are `recorded`; `actual` is the data's own. A fingerprint or content hash either side
    does not know is not checked. `restore`: the fix when only the images differ."""
    (fingerprint, content), (data_fingerprint, data_content) = recorded, actual
    if fingerprint and fingerprint != data_fingerprint:
        raise InputError(f"{what} {verb} data {fingerprint}, but {spec} is {data_fingerprint}; pass the matching --data")
    if content and data_content and content != data_content:
        raise InputError(
            f"{what} {verb} other images than {spec} holds (same labels, different pixels or image order: content {content} vs "
            f"{data_content}), so its positions would point at other images; {restore}"
        )
