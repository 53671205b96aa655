"""The lean causal-LM loss and sequence packing: same numbers as the plain path, refused where they cannot be."""

import pytest
import torch
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

from lft.config.errors import ConfigError
from lft.data.packing import PackingCollator, check_packing_isolates, first_fit_decreasing
from lft.speed.lean_loss import causal_lm_loss
from lft.speed.precision import auto_precision, fast_bf16

IGNORE = -100


def _rows(vocab: int, lengths: list[int], seed: int = 0) -> list[dict]:
    """Prompt/response rows: the first half of each row is prompt (no labels)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE] * (n // 2) + ids[n // 2:]})
    return rows


def _padded(rows: list[dict], pad: int) -> dict:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad)
    labels = torch.full((len(rows), width), IGNORE)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model, loss_fn, batch):
    model.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def decoder(request):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(request.param))
    model.config.pad_token_id = model.config.pad_token_id or 0
    return model.eval()  # dropout off: the paths must agree number for number (gradients flow in eval mode too)


def _plain(model, batch):
    return model(**batch, use_cache=False).loss


def test_chunked_loss_equals_the_models_own_loss_and_gradients(decoder, monkeypatch):
    import lft.speed.lean_loss as causal

    monkeypatch.setattr(causal, "CHUNK_TOKENS", 7)  # several chunks, the last one partial
    decoder.config.attn_implementation = "eager"
    batch = _padded(_rows(decoder.config.vocab_size, [9, 23, 16]), pad=0)
    want, want_grads = _loss_and_grads(decoder, _plain, batch)
    got, got_grads = _loss_and_grads(decoder, causal_lm_loss, batch)
    assert torch.allclose(got, want, atol=1e-6)
    assert want_grads.keys() == got_grads.keys()
    for name, grad in want_grads.items():
        assert torch.allclose(got_grads[name], grad, atol=1e-6), name


def test_chunked_loss_reaches_lora_weights(tiny_llama):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama).eval(),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = _padded(_rows(model.config.vocab_size, [12, 20]), pad=0)
    want, want_grads = _loss_and_grads(model, _plain, batch)
    got, got_grads = _loss_and_grads(model, causal_lm_loss, batch)
    assert torch.allclose(got, want, atol=1e-6) and got_grads.keys() == want_grads.keys() != set()
    assert all(torch.allclose(got_grads[n], g, atol=1e-6) for n, g in want_grads.items())


def test_a_packed_batch_gives_the_unpacked_loss_and_gradients(decoder):
    rows = _rows(decoder.config.vocab_size, [30, 8, 11, 19, 5, 26])
    packed = PackingCollator(pad_token_id=0)([dict(r) for r in rows])
    assert len(packed["input_ids"]) < len(rows)  # fewer rows than the padded batch
    assert "attention_mask" not in packed
    want, want_grads = _loss_and_grads(decoder, _plain, _padded(rows, pad=0))
    for loss_fn in (_plain, causal_lm_loss):
        got, got_grads = _loss_and_grads(decoder, loss_fn, packed)
        assert torch.allclose(got, want, atol=1e-5), loss_fn
        assert all(torch.allclose(got_grads[n], g, atol=1e-5) for n, g in want_grads.items())


def test_first_fit_decreasing_places_every_row_once_within_capacity():
    lengths = [30, 8, 11, 19, 5, 26, 30, 1]
    bins = first_fit_decreasing(lengths, 30)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 30 for b in bins)
    assert len(bins) == 5  # 30 | 30 | 26+1 | 19+11 | 8+5


def test_packing_is_refused_where_attention_cannot_keep_documents_apart(decoder):
    check_packing_isolates(decoder, decoder.config.vocab_size)  # llama and gpt2 honour position ids
    opt = OPTForCausalLM(OPTConfig(vocab_size=100, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                   num_attention_heads=2, word_embed_proj_dim=16))
    with pytest.raises(ConfigError, match="data.packing=true: OPTForCausalLM does not keep packed documents apart"):
        check_packing_isolates(opt, 100)


def test_auto_precision_follows_the_hardware(make_cfg):
    cfg = make_cfg()
    assert cfg.trainer.precision == auto_precision()
    assert auto_precision() == ("bf16-mixed" if fast_bf16() else "32-true")


def test_transformer_blocks_are_the_models_repeated_layers(tiny_llama):
    from lft.models.blocks import transformer_blocks

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert [type(b).__name__ for b in transformer_blocks(model)] == ["LlamaDecoderLayer"] * 2
