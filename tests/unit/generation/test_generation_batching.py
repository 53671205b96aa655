"""The order in which generation batches rows: flagged rows first, longest prompt first."""

from datasets import Dataset

from lft.generation.generator import generation_order


def test_generation_order_puts_flagged_rows_first_longest_prompt_first():
    split = Dataset.from_dict({"input_ids": [[1] * 5, [1] * 9, [1] * 7, [1] * 3, [1] * 8],
                               "prompt_length": [4, 2, 6, 1, 3], "generate": [True, True, True, False, False]})
    assert generation_order(split) == [2, 0, 1, 4, 3]  # flagged by prompt length, the rest by full length
    encoder_inputs = split.remove_columns("prompt_length")  # encoder-decoders: the input is the prompt
    assert generation_order(encoder_inputs) == [1, 2, 0, 4, 3]
    assert generation_order(split.remove_columns("generate")) == [0, 1, 2, 3, 4]
