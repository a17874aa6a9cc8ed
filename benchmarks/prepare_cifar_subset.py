"""Extract a class-balanced CIFAR-10 subset from the JPEG tarball into an imagefolder root.

The tarball (`../shared/data/cifar10/cifar10-jpeg.tar.gz`, see its README) holds
`train/<class>/NNNN.jpg` (5,000 per class) and `test/<class>/NNNN.jpg` (1,000 per class), NNNN
following CIFAR-10's original order within each class. This keeps the first N train and M test
images of every class, so the same arguments always give the same subset:

    python3 benchmarks/prepare_cifar_subset.py --source ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
        --per-class 1000 --test-per-class 200 --out ~/.cache/remcli/cifar10-10k

Then use `--data imagefolder:OUT`. Only the standard library is needed. The source is only read;
OUT is filled in a temporary folder beside it and renamed into place, and a finished OUT (its
`.prepared` stamp records the arguments) is left as it is. `--per-class 5000 --test-per-class 1000`
gives the full dataset. `--offset K` skips the first K training images of every class, so a second
subset never shares a training image with the first (benchmarks/sweep_finetuned.sh pretrains on
`--offset 150`, disjoint from the 150 per class it fine-tunes on); the test images stay the first M.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

SPLITS = {"train": 5000, "test": 1000}  # images per class in the tarball


def wanted(name: str, limits: dict[str, int], offset: int = 0) -> tuple[str, str, str] | None:
    """`train/cat/0042.jpg` -> (split, class, file) if it is within the limit of its split (training images from `offset` on)."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in limits or not parts[2].endswith(".jpg"):
        return None
    try:
        number = int(parts[2][:-4])
    except ValueError:
        return None
    first = offset if parts[0] == "train" else 0
    return (parts[0], parts[1], parts[2]) if first <= number < first + limits[parts[0]] else None


def prepare(source: Path, out: Path, per_class: int, test_per_class: int, offset: int = 0) -> dict:
    stamp = {"source": source.name, "per_class": per_class, "test_per_class": test_per_class, **({"offset": offset} if offset else {})}
    marker = out / ".prepared"
    if marker.is_file():
        if json.loads(marker.read_text()) == stamp:
            return {**stamp, "out": str(out), "status": "already prepared"}
        raise SystemExit(f"error: {out} holds another subset ({marker.read_text().strip()}); choose another --out or delete it")
    if out.exists():
        raise SystemExit(f"error: {out} exists but is not a finished subset; delete it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    limits = {"train": per_class, "test": test_per_class}
    counts: dict[tuple[str, str], int] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:  # one streaming pass over the archive
                if not member.isfile():
                    continue
                hit = wanted(member.name, limits, offset)
                if hit is None:
                    continue
                split, cls, name = hit
                target = tmp / split / cls / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, dst)
                counts[(split, cls)] = counts.get((split, cls), 0) + 1
        classes = sorted({cls for _, cls in counts})
        for split, limit in limits.items():
            short = [cls for cls in classes if counts.get((split, cls), 0) != limit]
            if len(classes) != 10 or short:
                raise SystemExit(
                    f"error: {source} gave {split} counts {[counts.get((split, c), 0) for c in classes]}, expected {limit} for each of 10 classes"
                )
        (tmp / ".prepared").write_text(json.dumps(stamp) + "\n")
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {**stamp, "out": str(out), "status": "prepared", "train": per_class * 10, "test": test_per_class * 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="cifar10-jpeg.tar.gz")
    parser.add_argument("--per-class", type=int, required=True, help=f"training images per class (1..{SPLITS['train']})")
    parser.add_argument("--test-per-class", type=int, required=True, help=f"test images per class (1..{SPLITS['test']})")
    parser.add_argument("--offset", type=int, default=0, help="skip the first OFFSET training images of every class (a disjoint subset)")
    parser.add_argument("--out", type=Path, required=True, help="imagefolder root to create (OUT/train/<class>, OUT/test/<class>)")
    args = parser.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"error: {args.source} not found; pass the cifar10-jpeg.tar.gz from ../shared/data/cifar10")
    train_ok = 0 <= args.offset < SPLITS["train"] and 0 < args.per_class <= SPLITS["train"] - args.offset
    if not train_ok or not 0 < args.test_per_class <= SPLITS["test"]:
        raise SystemExit(f"error: --offset + --per-class must be in 1..{SPLITS['train']} (offset >= 0) and --test-per-class in 1..{SPLITS['test']}")
    result = prepare(args.source, args.out.expanduser(), args.per_class, args.test_per_class, args.offset)
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
