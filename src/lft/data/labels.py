"""The label id that carries no loss, in one place: prompt tokens, padding, a packed document's first token.

-100 is the `ignore_index` default of torch.nn.functional.cross_entropy, which every Hugging Face model's own
loss uses, so lft's losses, collators and token counts must mark positions with exactly this value.
"""

IGNORE = -100
