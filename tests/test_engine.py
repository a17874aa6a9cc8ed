"""The training engine's precision choice, optimiser-state reset and early stop (tiny real tensors)."""

from __future__ import annotations

import torch
from torch import nn

from remcli.data.pipeline import Batch, InputSpec, SampleView, training_batch_bounds
from remcli.engine import (
    Engine,
    OptimConfig,
    cpu_has_native_bf16,
    make_optimizer,
    resolve_precision,
)

CPU = torch.device("cpu")
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
AMX = "flags\t\t: fpu avx2 amx_bf16 amx_tile\n"
AVX2_ONLY = "flags\t\t: fpu sse2 avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(AVX512_BF16)
    assert cpu_has_native_bf16(AMX)
    assert not cpu_has_native_bf16(AVX2_ONLY)
    assert not cpu_has_native_bf16("")


def test_auto_precision_on_cpu_is_bf16_only_where_supported():
    assert resolve_precision("auto", CPU, cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", CPU, cpu_bf16=False) == "fp32"
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_explicit_precision_is_never_overridden():
    assert resolve_precision("fp32", CPU, cpu_bf16=True) == "fp32"
    assert resolve_precision("bf16", CPU, cpu_bf16=False) == "bf16"


def _engine(model: nn.Module) -> Engine:
    return Engine(make_optimizer(model.parameters(), OptimConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.0)), CPU)


def _batches(n: int):
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        yield Batch(torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen), torch.arange(8) + 8 * i)


def test_reset_optimizer_state_clears_momentum():
    model = nn.Linear(4, 3)
    engine = _engine(model)
    engine.run_epoch(_batches(2), lambda b: nn.functional.cross_entropy(model(b.inputs), b.labels))
    assert all("momentum_buffer" in engine.optimizer.state[p] for p in model.parameters())
    engine.reset_optimizer_state()
    assert len(engine.optimizer.state) == 0
    # a zero-gradient step after the reset moves nothing (no momentum left), only weight decay (0 here)
    before = [p.detach().clone() for p in model.parameters()]
    engine.step((model.weight * 0).sum() + (model.bias * 0).sum())
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_run_epoch_stops_when_asked():
    model = nn.Linear(4, 3)
    engine = _engine(model)
    asked = []

    def stop() -> bool:
        asked.append(engine.steps)
        return engine.steps >= 3

    stats = engine.run_epoch(_batches(10), lambda b: nn.functional.cross_entropy(model(b.inputs), b.labels), stop=stop)
    assert stats.steps == 3 and engine.steps == 3
    assert asked == [1, 2, 3], "stop() is asked after every step"


def test_devices_accept_cuda_index_and_refuse_what_cannot_run():
    import pytest

    from remcli.engine import resolve_device
    from remcli.errors import InputError

    assert resolve_device("cpu") == CPU
    for bad in ("tpu", "cuda:x", "cpu:0", "cuda:", "mps:1"):
        with pytest.raises(InputError, match="unknown device"):
            resolve_device(bad)
    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(InputError, match="CUDA GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(InputError, match="no CUDA GPU is visible"):
            resolve_device("cuda:1")


def test_training_batches_fold_a_tiny_last_batch_into_the_previous_one():
    # 1,410 samples at batch 128: the last batch of 2 joins the 11th (the CPU profile's divergence)
    assert training_batch_bounds(1410, 128)[-1] == (1280, 1410)
    assert len(training_batch_bounds(1410, 128)) == 11
    # a last batch of at least batch/8 stays on its own; one batch is never merged away
    assert training_batch_bounds(1425, 128)[-1] == (1408, 1425)
    assert training_batch_bounds(5, 128) == [(0, 5)]
    assert training_batch_bounds(256, 128) == [(0, 128), (128, 256)]


def test_a_shuffled_pass_sees_every_sample_once_and_an_evaluation_pass_cuts_plain_batches():
    count = 130
    view = SampleView(
        torch.zeros(count, 3, 4, 4, dtype=torch.uint8), torch.arange(count) % 10, torch.zeros(count, dtype=torch.bool), torch.arange(count), None
    )
    spec = InputSpec((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 3)
    shuffled = list(view.batches(spec, 64, torch.Generator().manual_seed(0), augment=True))
    assert [len(b.labels) for b in shuffled] == [64, 66]
    assert sorted(torch.cat([b.indices for b in shuffled]).tolist()) == list(range(count))
    assert [len(b.labels) for b in view.batches(spec, 64)] == [64, 64, 2]
