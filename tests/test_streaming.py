"""The streaming data path (imagefolder:ROOT?stream): the same samples, batches and model as the
in-memory path, on real CIFAR-10 JPEGs, and memory that does not grow with the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from remcli.cli.main import app
from remcli.data.datasets import DataSpec, load_dataset, parse_data_spec
from remcli.data.image_folders import channel_statistics
from remcli.data.streaming import ImageFiles
from remcli.data.views import clean_view
from remcli.errors import InputError
from remcli.models import build_model, input_spec

CPU = torch.device("cpu")


def test_stream_is_a_spec_option_next_to_size():
    assert parse_data_spec("imagefolder:/d?size=64&stream") == DataSpec("imagefolder", Path("/d"), "imagefolder:/d?size=64&stream", 64, True)
    assert parse_data_spec("imagefolder:/d?stream") == DataSpec("imagefolder", Path("/d"), "imagefolder:/d?stream", stream=True)
    with pytest.raises(InputError, match="unknown option 'fast'"):
        parse_data_spec("imagefolder:/d?fast")
    with pytest.raises(InputError, match="only for imagefolder and sample"):
        parse_data_spec("cifar10:/d?stream")


def test_channel_statistics_match_torch_on_the_whole_tensor():
    images = torch.randint(0, 256, (37, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pixels = images.double() / 255
    mean, std = channel_statistics(iter(images.split(10)))
    assert mean == tuple(round(v, 4) for v in pixels.mean(dim=(0, 2, 3)).tolist())
    assert std == tuple(round(v, 4) for v in pixels.std(dim=(0, 2, 3)).tolist())


def test_streamed_samples_batches_and_logits_equal_the_in_memory_ones(cifar_spec):
    memory, streamed = load_dataset(cifar_spec), load_dataset(cifar_spec + "?stream")
    assert isinstance(streamed.train.images, ImageFiles) and isinstance(memory.train.images, torch.Tensor)
    assert streamed.fingerprint == memory.fingerprint and streamed.train.paths == memory.train.paths
    assert torch.equal(streamed.train.labels, memory.train.labels) and streamed.input_shape == memory.input_shape
    assert (streamed.mean, streamed.std) == (memory.mean, memory.std)  # 1,000 images: the sample is the whole split
    positions = torch.arange(0, len(memory.train), 3)
    views = [clean_view(d.train, positions, CPU) for d in (memory, streamed)]
    spec = input_spec(memory, "resnet9")
    torch.manual_seed(0)
    model = build_model("resnet9", 10, 3, 32, width=0.125).eval()
    for augment in (False, True):
        orders = [torch.Generator().manual_seed(7) for _ in views]
        pairs = zip(*(v.batches(spec, 64, g, augment=augment) for v, g in zip(views, orders)))
        for a, b in pairs:
            assert torch.equal(a.indices, b.indices) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.inputs, b.inputs)  # same pixels, crops, flips: the same logits follow
            if not augment:
                with torch.no_grad():
                    assert torch.equal(model(a.inputs), model(b.inputs))


@pytest.mark.slow
def test_training_on_a_streamed_folder_gives_the_in_memory_checkpoint(cifar_spec, tmp_path):
    args = ["train", "--width", "0.125", "--epochs", "1", "--batch-size", "128", "--device", "cpu", "--quiet", "--json", "-"]
    runner = CliRunner()
    memory = runner.invoke(app, [*args, "--data", cifar_spec, "--out", str(tmp_path / "m.safetensors")])
    streamed = runner.invoke(app, [*args, "--data", cifar_spec + "?stream", "--out", str(tmp_path / "s.safetensors")])
    assert memory.exit_code == 0 and streamed.exit_code == 0, streamed.output
    a, b = load_file(tmp_path / "m.safetensors"), load_file(tmp_path / "s.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(streamed.stdout)["steps"] == json.loads(memory.stdout)["steps"]


PEAK_RSS = """
import sys, torch
from remcli.data.datasets import load_dataset
from remcli.data.views import clean_view
from remcli.models import input_spec
dataset = load_dataset(sys.argv[1])
view = clean_view(dataset.train, torch.arange(len(dataset.train)), torch.device("cpu"))
seen = sum(int(b.labels.shape[0]) for b in view.batches(input_spec(dataset, "resnet9"), 64, torch.Generator().manual_seed(0), augment=True))
assert seen == len(dataset.train)
# this process's own peak (VmHWM, kB): ru_maxrss would carry over the forking parent's peak across exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def write_folder(root, count: int, side: int = 128) -> str:
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("test", 10)):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / split / f"c{i % 2}" / f"{i:05d}.png")
    return f"imagefolder:{root}"


@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM from /proc/self/status")
@pytest.mark.slow
def test_peak_memory_stays_flat_when_a_streamed_folder_grows_tenfold(tmp_path):
    small, large = write_folder(tmp_path / "small", 200), write_folder(tmp_path / "large", 2000)  # 9.8 MB and 98 MB decoded
    # decode in this process, so its RSS holds it all; a fixed mmap threshold makes glibc return freed
    # batch buffers, so peak RSS measures live memory rather than the allocator's retention (with its
    # default dynamic threshold the streamed peak varied by up to ~70 MB from run to run)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REMCLI_DECODE_WORKERS": "0", "MALLOC_MMAP_THRESHOLD_": "65536"}

    def peak_mib(spec: str) -> float:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, spec], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1]) / 1024

    streamed_growth = peak_mib(large + "?stream") - peak_mib(small + "?stream")
    memory_growth = peak_mib(large) - peak_mib(small)
    assert memory_growth > 60, memory_growth  # the measurement sees a split held in memory
    assert streamed_growth < 20, streamed_growth
