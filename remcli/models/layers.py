"""CELU and 2x2 max pooling with faster CPU paths, bit for bit the same outputs in bfloat16.

Two of torch's CPU kernels were the slowest layers of ResNet-9 on the CPUs remcli is developed on
(AMD EPYC with AVX-512), ahead of the convolutions (docs/performance.md):

* CELU (like ELU and SELU) evaluates expm1, which there is often several times slower than `exp`
  on the same tensor; an inference pass ran about 3x faster with ReLU in CELU's place. Evaluating
  alpha * (exp(x / alpha) - 1) in float32 and rounding once to the input's dtype gives the same
  bfloat16 values as torch's kernel wherever |x| > ~2e-6 (the subtraction's cancellation is far
  below a bfloat16 step there; closer to zero both are within 1e-8 of celu(x)); in float32 the two
  agree to about 1e-8. The backward is torch's own `elu_backward` on the input,
  so gradients are torch's.
* max pooling over a contiguous (NCHW) tensor ran about 7x slower than over the same tensor in
  channels-last layout. The forward pools a channels-last copy (max is exact, and the kernels pick
  the same element among ties); the backward is torch's own, on the indices converted back.

CUDA and other devices keep torch's kernels. Neither module has parameters, so checkpoints and
their tensor names are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _CPUCELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        work = x.to(torch.promote_types(x.dtype, torch.float32), copy=True)
        # exp(z) - 1 with z <= -2^-24, the largest z whose exp is below 1 in float32: where x is above
        # (positive, or within ~5e-9 of zero) `negative` is -alpha * 2^-24 and the maximum returns x
        negative = work.mul_(1.0 / alpha).clamp_(max=-(2.0**-24)).exp_().sub_(1.0).mul_(alpha).to(x.dtype)
        return torch.maximum(x, negative)  # celu(x) >= x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, ctx.alpha, 1, 1.0 / ctx.alpha, False, x), None


def celu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """`torch.nn.functional.celu`, evaluated through `exp` on CPU tensors (module docstring)."""
    if x.device.type != "cpu" or not x.is_floating_point():
        return F.celu(x, alpha)
    return _CPUCELU.apply(x, alpha)


class CELU(nn.CELU):
    """`nn.CELU` (same repr, no parameters) through `celu` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return F.celu(x, self.alpha, inplace=True)
        return celu(x, self.alpha)


class _CPUMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
        pooled, indices = F.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), kernel_size, stride)
        ctx.save_for_backward(x, indices.contiguous())
        ctx.kernel_size, ctx.stride = kernel_size, stride
        return pooled.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, indices = ctx.saved_tensors
        k, s = ctx.kernel_size, ctx.stride
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, [k, k], [s, s], [0, 0], [1, 1], False, indices), None, None


def max_pool2d(x: torch.Tensor, kernel_size: int, stride: int | None = None) -> torch.Tensor:
    """`torch.nn.functional.max_pool2d` without padding, pooled channels-last on contiguous CPU
    tensors (module docstring)."""
    stride = kernel_size if stride is None else stride
    if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous():
        return F.max_pool2d(x, kernel_size, stride)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel_size, stride).contiguous()
    return _CPUMaxPool.apply(x, kernel_size, stride)


class MaxPool2d(nn.MaxPool2d):
    """`nn.MaxPool2d` (same repr) through `max_pool2d` above where it is a square window without
    padding, dilation or ceil mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.padding == 0 and self.dilation == 1 and not self.ceil_mode and not self.return_indices
        if plain and isinstance(self.kernel_size, int) and isinstance(self.stride, int):
            return max_pool2d(x, self.kernel_size, self.stride)
        return super().forward(x)
