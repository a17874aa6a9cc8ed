"""Query images: test-time images a user saw misbehave, decoded exactly as the training data is.

A query set is not part of any split: no positions, no labels. It is a folder (every image under
it, sorted, at any depth) or a list file (one image path per line, relative to the list file's
folder unless absolute; `#` comment lines and inline notes after whitespace + `#` are skipped).
`PATH?size=N` resizes every image to N x N with the loader's own decoder; `?wrong=LABEL` (for
`evaluate --eval-set`) names the label the images wrongly get. The images are decoded by the
one decoder of the in-memory and streamed loaders (`streaming.decode_images`) and must have the
model's input shape: they then take the same batch path (and so the same normalisation) as every
split, through `views.clean_view`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from remcli.data.datasets import Split
from remcli.data.image_folders import IMAGE_EXTENSIONS
from remcli.data.streaming import decode_images, unreadable_images_error
from remcli.errors import InputError

_INLINE_NOTE = re.compile(r"\s+#.*$")


def parse_query_spec(spec: str, option: str) -> tuple[Path, int | None, str | None]:
    """`q/?size=32&wrong=airplane` -> (Path('q'), 32, 'airplane'); options are `size=N` and `wrong=LABEL`."""
    base, _, query = spec.partition("?")
    size = wrong = None
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key == "size" and value.isdigit() and int(value) > 0:
            size = int(value)
        elif key == "wrong" and value:
            wrong = value
        else:
            raise InputError(f"{option} option {part!r} in {spec!r} is not ?size=N (a positive integer) or ?wrong=LABEL; fix or remove it")
    if not base:
        raise InputError(f"{option} {spec!r} names no folder or list file; give the path of your query images")
    return Path(base).expanduser(), size, wrong


def class_index(text: str, classes: tuple[str, ...], option: str) -> int:
    """A class given by name (`cat`) or by label number (`3`), as the training data numbers them."""
    if text in classes:
        return classes.index(text)
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    raise InputError(f"{option}: {text!r} is not a class of the training data; give a name ({shown}) or a number 0-{len(classes) - 1}")


def query_files(path: Path, option: str) -> list[str]:
    """The image files a query folder or list file names, in a fixed order."""
    if path.is_dir():
        files = [
            os.path.join(root, name)
            for root, _, names in sorted(os.walk(path, followlinks=True))
            for name in sorted(names)
            if name.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not files:
            raise InputError(f"{option} folder {path} holds no images ({' '.join(IMAGE_EXTENSIONS)}); put the misbehaving images in it")
        return files
    if not path.is_file():
        problem = "is neither a folder nor a regular file" if path.exists() else "does not exist"
        raise InputError(f"{option} {path} {problem}; give a folder of images or a file listing image paths")
    lines = [_INLINE_NOTE.sub("", line).strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    files = [str(path.parent / line) if not os.path.isabs(line) else line for line in lines if line and not line.startswith("#")]
    if not files:
        raise InputError(f"{option} list file {path} names no images; write one image path per line")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise InputError(
            f"{option} list file {path} names {len(missing)} missing file(s), first {missing[0]}; "
            f"fix the paths (relative ones are read from {path.parent})"
        )
    return files


def load_queries(spec: str, input_shape: tuple[int, ...], option: str = "--query") -> tuple[Split, str | None]:
    """The query images as a Split (labels 0: they have none) with their paths, and the `?wrong=`
    label text if given. Images of another size or channel count than the model's input are
    refused (one line naming the fix), never silently resized to fit."""
    path, size, wrong = parse_query_spec(spec, option)
    files = query_files(path, option)
    arrays, unreadable = decode_images(files, size)
    if unreadable:
        raise unreadable_images_error(unreadable, f"in {option} {path}")
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        sizes = ", ".join(f"{s[1]}x{s[0]}" for s in shapes[:3])
        raise InputError(f"{option} images have different sizes ({sizes}); add ?size={input_shape[-1]} to the path to resize them all")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    channels, height, width = images.shape[1:]
    if channels != input_shape[0]:
        raise InputError(
            f"{option} images decode to {channels} channels (RGB) but the model takes {input_shape[0]}; "
            "give images of the kind the model was trained on"
        )
    if (height, width) != tuple(input_shape[1:]):
        raise InputError(
            f"{option} images are {width}x{height} but the model takes {input_shape[2]}x{input_shape[1]}; "
            f"add ?size={input_shape[-1]} to the path to resize them"
        )
    return Split(images, torch.zeros(len(images), dtype=torch.int64), tuple(files)), wrong
