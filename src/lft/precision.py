"""`precision=auto`: bf16 autocast where the hardware computes bf16 faster than fp32, fp32 elsewhere.

Measured on a 2-core AMX CPU (bench/README.md): bf16 autocast trains MiniLM about 1.4x and SmolLM2-135M about
2x faster than fp32. CPUs without bf16 units emulate it (slower than fp32), so they stay in fp32.
"""

import torch


def fast_bf16() -> bool:
    """True on CUDA GPUs with bf16 (Ampere+) and on CPUs with AMX or AVX-512-BF16."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())


def auto_precision() -> str:
    """The Lightning precision flag `precision=auto` resolves to."""
    return "bf16-mixed" if fast_bf16() else "32-true"
