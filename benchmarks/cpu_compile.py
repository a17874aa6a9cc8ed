"""Does `torch.compile` speed up training on this CPU? Eager against compiled, measured in one run.

Times steady-state training steps of a remcli model (bf16 autocast and channels_last where the CPU
has native bf16, as `--precision auto` does; fp32 elsewhere), eager and through `torch.compile`,
and, since ResNet-9's CELU is where most of a CPU step goes, the activation alone: eager
`F.celu` against a compiled form that computes in fp32 and rounds once. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_compile.py --width 0.5 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from remcli.engine import autocast, resolve_precision
from remcli.models import build_model


def steady_ms(fn, steps: int) -> tuple[float, float]:
    """(seconds of the first call, which includes compilation; mean ms of `steps` calls after a warm-up)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return first, (time.perf_counter() - start) / steps * 1000


def training_step(arch: str, width: float, batch: int, precision: str, compiled: bool):
    torch.manual_seed(0)
    model = build_model(arch, 10, width=width).to(memory_format=torch.channels_last).train()
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def celu_fp32_then_round(t: torch.Tensor, alpha: float = 0.075) -> torch.Tensor:
    """CELU computed in fp32 with expm1(z) = tanh(z/2) (exp(z) + 1), which compiles to vectorised code."""
    x = t.float()
    z = x.clamp_max(0) * (1 / alpha)
    return torch.where(x > 0, x, torch.tanh(z * 0.5) * (torch.exp(z) + 1) * alpha).to(t.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet9")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    precision = resolve_precision("auto", torch.device("cpu"))
    report: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__, "precision": precision}
    for label, compiled in (("eager", False), ("compiled", True)):
        first, ms = steady_ms(training_step(args.arch, args.width, args.batch_size, precision, compiled), args.steps)
        report[f"train_step_{label}"] = {"first_call_s": round(first, 1), "ms": round(ms, 1)}
    report["train_step_compiled_speedup"] = round(report["train_step_eager"]["ms"] / report["train_step_compiled"]["ms"], 3)

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    width = max(1, round(64 * args.width))
    t = torch.randn(args.batch_size, width, 32, 32).to(dtype).contiguous(memory_format=torch.channels_last)
    eager = steady_ms(lambda: F.celu(t, 0.075), args.steps * 2)[1]
    compiled_fn = torch.compile(celu_fp32_then_round, dynamic=True)
    first, compiled = steady_ms(lambda: compiled_fn(t), args.steps * 2)
    report["celu_first_layer"] = {
        "shape": list(t.shape),
        "dtype": str(dtype).removeprefix("torch."),
        "eager_ms": round(eager, 1),
        "compiled_fp32_form_ms": round(compiled, 1),
        "compile_s": round(first, 1),
        "speedup": round(eager / compiled, 3),
        "bitwise_equal": torch.equal(compiled_fn(t), F.celu(t, 0.075)),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
