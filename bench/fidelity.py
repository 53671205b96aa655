"""What each speed path's numbers are worth: its error against an fp32 reference beside the stock path's.

Two tables, written to a new `bench/results/fidelity-<UTC time>.md` (never over an old one):
1. Every family of tests/unit/speed/test_fidelity_matrix.py, full and LoRA: the relative error (2-norm over all gradients;
   the loss as a relative difference) of lft's training forward and of stock transformers + peft against the
   stock fp32 forward, in fp32 and under bf16 autocast. The test asserts these within the contract's tolerance;
   this prints the values.
2. Attention with dropout (dropout_masks.attention) against F.scaled_dot_product_attention as transformers calls
   it, with the same mask, both against an fp64 reference: max and mean |error| (16 x 12 heads x 256 x 32, key
   padding, p = 0.1).

    python bench/fidelity.py
"""

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the matrix's tiny families live with its test

import tests.unit.speed.test_fidelity_matrix as matrix  # noqa: E402

from lft.speed import dropout_masks  # noqa: E402


def matrix_row(family: str, lora: bool, bf16: bool) -> tuple[float, float, float, float]:
    """(lft loss, stock loss, lft grads, stock grads): relative errors against the stock fp32 forward."""
    ours, stock, task = matrix._sides(family, lora)
    batch = matrix._batch(matrix.FAMILIES[family][2])
    if bf16 and lora:
        matrix.cast_frozen_base(ours)  # as lft's fit does under bf16 autocast
    ref_loss, ref_grads = matrix._run(stock, matrix._stock_loss, batch, False)
    stock_loss, stock_grads = matrix._run(stock, matrix._stock_loss, batch, bf16) if bf16 else (ref_loss, ref_grads)
    lft_loss, lft_grads = matrix._run(ours, task.loss, batch, bf16)

    def flat(grads):
        return torch.cat([grads[n].float().flatten() for n in sorted(ref_grads)])

    ref = flat(ref_grads)

    def rel(grads):
        return ((flat(grads) - ref).norm() / ref.norm()).item()

    def rel_loss(loss):
        return (abs(loss - ref_loss) / abs(ref_loss)).item()

    return rel_loss(lft_loss), rel_loss(stock_loss), rel(lft_grads), rel(stock_grads)


def matrix_table() -> list[str]:
    lines = ["| family | variant | fp32: lft loss / grads | bf16: lft loss / stock loss | bf16: lft grads / stock grads |",
             "| --- | --- | --- | --- | --- |"]
    for family in matrix.FAMILIES:
        for lora in (False, True):
            fp32 = matrix_row(family, lora, False)
            bf16 = matrix_row(family, lora, True)
            lines.append(f"| {family} | {'LoRA' if lora else 'full'} | {fp32[0]:.1e} / {fp32[2]:.1e} | "
                         f"{bf16[0]:.2e} / {bf16[1]:.2e} | {bf16[2]:.2e} / {bf16[3]:.2e} |")
    return lines


def attention_table() -> list[str]:
    batch, heads, length, dim, p = 16, 12, 256, 32, 0.1
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, dim) for _ in range(3))
    mask = torch.zeros(batch, 1, 1, length)
    for b in range(1, batch):
        mask[b, ..., length - 16 * b:] = -math.inf

    def aten_mask(shape, p_, device):  # ATen's Bernoulli draws, so both paths drop the same elements
        noise = torch.empty(shape).bernoulli_(1 - p_).div_(1 - p_)
        return noise == 0, noise.max().item()

    lines = ["| inputs | precision | stock F.sdpa max / mean | lft max / mean | lft vs stock max |",
             "| --- | --- | --- | --- | --- |"]
    drop_mask = dropout_masks.drop_mask
    dropout_masks.drop_mask = aten_mask
    try:
        for inputs in ("fp32", "bf16"):
            for autocast in (False, True):
                qq, kk, vv = (q, k, v) if inputs == "fp32" else (q.bfloat16(), k.bfloat16(), v.bfloat16())
                torch.manual_seed(5)
                noise = torch.empty(batch, heads, length, length).bernoulli_(1 - p).div_(1 - p)
                scores = qq.double() @ kk.double().transpose(-2, -1) / math.sqrt(dim) + mask.double()
                ref = ((scores.softmax(-1) * noise.double()) @ vv.double()).transpose(1, 2)
                outs = {}
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    torch.manual_seed(5)
                    outs["stock"] = F.scaled_dot_product_attention(qq, kk, vv, mask, dropout_p=p).transpose(1, 2)
                    torch.manual_seed(5)
                    outs["lft"] = dropout_masks.attention(nn.Module(), qq, kk, vv, mask, dropout=p, is_causal=False)[0]
                err = {name: (out.double() - ref).abs() for name, out in outs.items()}
                apart = (outs["lft"].double() - outs["stock"].double()).abs().max().item()
                lines.append(f"| {inputs} | {'bf16 autocast' if autocast else 'as given'} | "
                             f"{err['stock'].max().item():.2e} / {err['stock'].mean().item():.2e} | "
                             f"{err['lft'].max().item():.2e} / {err['lft'].mean().item():.2e} | {apart:.1e} |")
    finally:
        dropout_masks.drop_mask = drop_mask
    return lines


def main() -> None:
    torch.set_num_threads(1)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"fidelity-{stamp}.md"
    if out.exists():
        raise SystemExit(f"{out} exists: results are never overwritten")
    text = "\n".join([f"# Speed-path fidelity ({stamp}, torch {torch.__version__})", "",
                      "## Training forward vs stock transformers + peft (relative error against stock fp32)", "",
                      *matrix_table(), "",
                      "## Attention with dropout, same mask (|error| against fp64)", "", *attention_table(), ""])
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
