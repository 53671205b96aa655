"""What a benchmarked run did, read from the run itself rather than from its settings: the precision its training
forwards ran in, the tokens they were given, the model FLOPs that work is worth, and the machine it ran on.

A label written from the configuration can be wrong (an earlier table called the fp32 Trainer `bf16-mixed`), so
`ForwardProbe` watches the model's backbone (the transformer under any task head or adapter wrapper, which lft's
lean loss calls directly): in every training forward it reads the autocast state for the inputs' device and counts
the tokens (the attention mask's ones, or every position where a forward gets no mask, as packed rows do).
`LftProbe` attaches one to the model lft's Lightning fit trains and records the Trainer's resolved precision flag.

Model FLOPs per real token, the same count for every system (so MFU ratios equal throughput ratios):
  forward                         2 x N            N: parameters that multiply activations
  backward, activation gradients  2 x N            (through the whole network, down to the lowest adapter)
  backward, weight gradients      2 x N_trainable  (LoRA: the adapters and any trainable head only)
so (4 N + 2 N_trainable) per token for adapters and 6 N for a full fine-tune. N leaves out input embeddings
(lookups, not matmuls) but counts a tied output head once (it is a matmul). Not counted: attention's
scores and weighted sums (about 4 x layers x width x context per token forward, small at these lengths),
the logits lft's lean loss skips for unlabelled tokens (counted as if computed), elementwise ops, and
the saving where frozen lowest layers need no activation gradients (`freeze`: an upper bound).
"""

import os
import platform
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

# CPU feature flags (/proc/cpuinfo) that decide how fast bf16 and fp32 matmuls are.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
LABELS = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}  # Lightning's names for autocast precisions


def backbone(model: nn.Module) -> nn.Module:
    """The transformer under a task head and any peft wrapper (transformers' `base_model`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "base_model", base)


def matmul_params(model: nn.Module) -> tuple[int, int]:
    """(N, N_trainable): parameters that multiply activations, and the trainable ones among them."""
    lookups = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    heads = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    counted = [p for p in model.parameters() if id(p) not in lookups or id(p) in heads]  # tied weights once
    return sum(p.numel() for p in counted), sum(p.numel() for p in counted if p.requires_grad)


def flops_per_token(n: int, n_trainable: int) -> int:
    return 4 * n + 2 * n_trainable


def precision_label(autocast: torch.dtype | None, weights: set[torch.dtype]) -> str:
    """Lightning's name for what ran: an autocast dtype, else the weights' own dtype."""
    if autocast is not None:
        return LABELS.get(autocast, f"{autocast}-mixed")
    return "bf16-true" if weights == {torch.bfloat16} else "16-true" if weights == {torch.float16} else "32-true"


class ForwardProbe:
    """Counts a model's training forwards and their tokens, and notes the precision each ran in."""

    def __init__(self, model: nn.Module):
        self.n, self.n_trainable = matmul_params(model)
        self.active = True  # lft's probe opens it only inside training batches
        self.forwards = self.tokens = 0
        self.seen: set[str] = set()  # precision labels of the forwards
        self._linear: set[torch.dtype] | None = None  # the backbone's linear weights' dtypes, at the first forward
        self._module = backbone(model)
        self._handle = self._module.register_forward_pre_hook(self._see, with_kwargs=True)

    def _see(self, module, args, kwargs):
        if not (self.active and module.training and torch.is_grad_enabled()):
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"][..., 0]
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        real = mask is not None and mask.dim() == 2 and mask.shape == ids.shape
        self.tokens += int(mask.sum()) if real else ids.numel()
        self.forwards += 1
        if self._linear is None:  # after fit-start casts (lft's bf16 base weights)
            self._linear = {m.weight.dtype for m in module.modules() if isinstance(m, nn.Linear)}
        kind = ids.device.type
        autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        self.seen.add(precision_label(autocast, self._linear))

    @property
    def precision(self) -> str | None:
        return "+".join(sorted(self.seen)) or None

    def record(self) -> dict:
        return {"precision": self.precision, "training_forwards": self.forwards, "tokens_seen": self.tokens,
                "linear_weight_dtypes": sorted(str(d).removeprefix("torch.") for d in self._linear or ()), "matmul_params": self.n,
                "trainable_matmul_params": self.n_trainable,
                "flops_per_token": flops_per_token(self.n, self.n_trainable)}

    def close(self) -> None:
        self._handle.remove()


class LftProbe(Callback):
    """Attaches a ForwardProbe to the model lft's fit trains, open only inside training batches (a check lft
    runs before training does not count), and keeps the Trainer's precision flag and that model."""

    last: "LftProbe | None" = None  # the instance train() built from the config, for the bench to read

    def __init__(self):
        LftProbe.last = self
        self.probe: ForwardProbe | None = None
        self.model: nn.Module | None = None
        self.declared_precision: str | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.model, self.declared_precision = pl_module.model, str(trainer.precision)
        self.probe = ForwardProbe(pl_module.model)
        self.probe.active = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.probe.active = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.probe.active = False


def cpu_info() -> tuple[str, list[str]]:
    """(CPU model name, the CPU_FLAGS it has), from /proc/cpuinfo where there is one."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine(), []
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return name, [f for f in CPU_FLAGS if f in flags]


def machine(device: torch.device) -> dict:
    """Where a run ran: CPU model and its bf16 flags, cores and threads, or the GPU; library versions."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    name, flags = cpu_info()
    info = {"cpu": name, "cpu_flags": flags, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "device": str(device),
            "python": platform.python_version(),
            **{lib: installed(lib) for lib in ("torch", "transformers", "peft", "lightning")}}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                    cuda=torch.version.cuda)
    return info
