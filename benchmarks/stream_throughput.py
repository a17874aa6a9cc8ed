"""Throughput of the two data paths on one imagefolder, measured in one run: the in-memory path
(decoded once into uint8) against the streaming path (`?stream`: DataLoader workers decode each
batch). Each does one shuffled, augmented pass over the training split up to model inputs (no
model), after its load; the ratio is streamed / in-memory images per second.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stream_throughput.py imagefolder:/root/.cache/remcli/cifar10-1500
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from remcli.data.datasets import load_dataset
from remcli.data.streaming import decode_workers
from remcli.data.views import clean_view
from remcli.models import input_spec


def measure(spec: str, batch_size: int, epochs: int) -> dict:
    start = time.perf_counter()
    dataset = load_dataset(spec)
    loaded = time.perf_counter() - start
    view = clean_view(dataset.train, torch.arange(len(dataset.train)), torch.device("cpu"))
    model_spec = input_spec(dataset, "resnet9")
    order = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for batch in view.batches(model_spec, batch_size, order, augment=True):
            seen += int(batch.labels.shape[0])
    seconds = time.perf_counter() - start
    return {"spec": spec, "load_s": round(loaded, 2), "images": seen, "pass_s": round(seconds, 2), "images_per_s": round(seen / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="imagefolder:ROOT (with ?size=N if the images differ in size)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    joiner = "&" if "?" in args.data else "?"
    memory = measure(args.data, args.batch_size, args.epochs)
    streamed = measure(args.data + joiner + "stream", args.batch_size, args.epochs)
    print(
        json.dumps(
            {
                "in_memory": memory,
                "streamed": streamed,
                "decode_workers": decode_workers(),
                "stream_vs_memory": round(streamed["images_per_s"] / memory["images_per_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
