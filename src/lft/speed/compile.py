"""`compile=true`: torch.compile of each transformer block, where the fidelity contract lists the model class.

Equals the eager blocks to fp32 rounding (bf16: within the stock path's error); tests/unit/speed/test_fidelity_matrix.py.
"""

from lft.models.blocks import transformer_blocks
from lft.speed.contract import applies, mark


def compile_blocks(model) -> int:
    """torch.compile each transformer block in place (regional compilation): one compilation serves every layer
    of the same shape, so it starts in seconds rather than compiling the whole model, and peft's wrappers and
    the loss stay plain Python. Returns the number of blocks compiled: none for a model class the fidelity
    contract (lft/speed/contract.py) does not list, which runs uncompiled."""
    blocks = transformer_blocks(model)
    if not blocks or not applies("compile", model):
        return 0
    for block in blocks:
        block.compile()
    mark(model, "compile")
    return len(blocks)
