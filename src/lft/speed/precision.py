"""Where bf16 pays: `precision=auto` for training and bf16 weights while generating.

On CPUs with bf16 units (AMX, AVX-512-BF16) and Ampere or newer GPUs, bf16 matmuls run faster than fp32 ones
(bench/README.md has the measurements, each with its result file). CPUs without bf16 units emulate it (slower
than fp32), so they stay in fp32.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from lft.models.loading import is_quantized


def fast_bf16(device: torch.device | None = None) -> bool:
    """Whether bf16 matmuls beat fp32 on `device` (default: the GPU if there is one, else the CPU).

    CUDA: Ampere or newer. CPU: AMX or AVX-512-BF16 (private but stable torch checks since 2.1; a build without
    them counts as lacking the units).
    """
    kind = device.type if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                    or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    return False


def auto_precision() -> str:
    """The Lightning precision flag `precision=auto` resolves to."""
    return "bf16-mixed" if fast_bf16() else "32-true"


@contextmanager
def bf16_weights(model: torch.nn.Module) -> Iterator[None]:
    """Run the block with the model's fp32 parameters as bf16 copies; the fp32 tensors come back afterwards.

    Generation reads every weight once per new token, so bf16 halves those bytes and runs on the bf16 units;
    bf16 autocast instead re-casts the weights at every step (measured 45% slower decoding). Swapping `.data`
    keeps the Parameter objects (optimizer state, tied weights, hooks still point at them). Buffers stay fp32
    (rotary frequencies lose positions in bf16). Quantized and sharded (DeepSpeed, DTensor) weights are left
    alone: their kernels and wrappers expect their own dtypes.
    """
    swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    if not is_quantized(model):
        for param in model.parameters():  # each tied parameter once
            if param.dtype == torch.float32 and type(param.data) is torch.Tensor and not hasattr(param, "ds_id"):
                swapped.append((param, param.data))
                param.data = param.data.to(torch.bfloat16)
    try:
        yield
    finally:
        for param, data in swapped:
            param.data = data
