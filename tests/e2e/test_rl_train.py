"""Online RL end to end (data.task=ppo / rloo): a tiny Llama over a 32-word vocabulary learns to say one word.

The rule reward is the share of the word `w5` in each response (lft.rewards.rules.TokenShare); at the start the
random policy says it about 1 time in 32. A small vocabulary keeps the reward findable by sampling, so a few
dozen updates on a CPU show learning well beyond noise."""

import json
import random
import re

import pytest
import torch

from lft.recipes.train import train

WORDS = [f"w{i}" for i in range(28)]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


@pytest.fixture(scope="module")
def word_llama(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random Llama whose tokenizer knows 28 words and 4 specials (EOS ends a response)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        bos_token="[BOS]", eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("word_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def word_prompts(tmp_path_factory) -> str:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("word_prompts")
    for split, n in (("train", 64), ("validation", 32), ("test", 16)):
        rows = [{"text": " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))} for _ in range(n)]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rl_cfg(make_cfg, word_llama, word_prompts, task: str, *extra: str, out: str = "run"):
    target = WORDS.index("w5") + len(SPECIALS)
    return make_cfg(f"model.name_or_path={word_llama}", "model.dtype=null", "model.gradient_checkpointing=false",
                    f"data.path={word_prompts}", f"data.task={task}", "data.max_length=16", "data.batch_size=8",
                    "data.eval_batch_size=32", "data.monitor.metric=val/reward", "data.monitor.mode=max",
                    f"+reward.fn={{_target_:lft.rewards.rules.TokenShare,token_id:{target}}}",
                    "rl.max_new_tokens=6", "rl.samples_per_prompt=4", "rl.mini_batch_size=16", "logger=csv",
                    "scheduler=constant", "test=false", *extra, out=out)


@pytest.mark.parametrize("task", ["ppo", "rloo"])
def test_online_rl_smoke_writes_a_run(make_cfg, word_llama, word_prompts, task, caplog):
    import logging

    cfg = _rl_cfg(make_cfg, word_llama, word_prompts, task, "strategy=lora", "trainer.log_every_n_steps=3",
                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    with caplog.at_level(logging.INFO, logger="lft"):
        metrics = train(cfg)
    assert metrics["optimizer_steps"] == 8  # 2 batches of 8 prompts x 4 samples: 2 epochs x 2 minibatches each
    # Progress counts updates, 4 a batch: a line as the count passes 3 and 6, each out of the 8 updates.
    progress = [r.message.split()[1] for r in caplog.records if r.message.startswith("step ")]
    assert progress == ["4/8", "8/8"]
    for name in ("val/reward", "val/kl", "val/response_length", "val/clip_fraction"):
        assert name in metrics, name
    assert 0 < metrics["val/response_length"] <= 6
    assert metrics["val/kl"] != 0  # the policy moved away from its reference


def _fit_between_validations(cfg):
    """train()'s pieces, with a validation before fitting and one after: (before, after, module, task)."""
    import lightning as L
    from hydra.utils import instantiate

    from lft.models.loading import load_tokenizer
    from lft.strategies import apply_strategy
    from lft.tasks import build_task
    from lft.training.finetune_module import FineTuneModule

    L.seed_everything(cfg.seed)
    task = build_task(cfg.data, cfg.model, run_cfg=cfg)
    encoded = task.encode(load_tokenizer(cfg.model), cfg.seed)
    model, task = apply_strategy(task.build_model(cfg.model, encoded), cfg.strategy, task)
    module = FineTuneModule(model, task, instantiate(cfg.optimizer), cfg.scheduler, encoded)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=cfg.trainer.limit_train_batches, accelerator="cpu",
                        num_sanity_val_steps=0, inference_mode=False,  # metric states stay usable across stages
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(module, datamodule=encoded.datamodule, verbose=False)[0]
    trainer.fit(module, datamodule=encoded.datamodule)
    after = trainer.validate(module, datamodule=encoded.datamodule, verbose=False)[0]
    return before, after, module, task


@pytest.mark.slow  # 25-45 s each on a shared 2-core CPU
@pytest.mark.parametrize("task", ["ppo", "rloo"])
def test_online_rl_raises_the_held_out_reward(make_cfg, word_llama, word_prompts, task):
    cfg = _rl_cfg(make_cfg, word_llama, word_prompts, task, "strategy=full", "optimizer.lr=1e-2", "rl.kl_coef=0.02",
                  "trainer.limit_train_batches=8")
    before, after, module, rl_task = _fit_between_validations(cfg)
    # 32 held-out prompts x 6 tokens at p ~ 1/32: the mean's standard deviation is about 0.013.
    assert before["val/reward"] < 0.1
    assert after["val/reward"] > before["val/reward"] + 0.3, (before, after)
    assert before["val/kl"] == pytest.approx(0.0, abs=1e-5)  # the policy starts as its reference
    assert after["val/kl"] > 0.5
    assert module.trainer.global_step == 32  # 8 rollouts x 2 epochs x 2 minibatches
    reference = rl_task.reference.model  # full fine-tuning: a frozen copy, outside the module
    assert reference is not None and not any(p.requires_grad for p in reference.parameters())
    assert not any(name.startswith("reference") for name in module.state_dict())


def test_lora_reference_is_the_adapter_switched_off(make_cfg, word_llama, word_prompts):
    cfg = _rl_cfg(make_cfg, word_llama, word_prompts, "rloo", "strategy=lora", "optimizer.lr=3e-2",
                  "trainer.limit_train_batches=2")
    before, after, module, rl_task = _fit_between_validations(cfg)
    assert rl_task.reference.model is None  # no second copy of the policy
    assert before["val/kl"] == pytest.approx(0.0, abs=1e-5) and after["val/kl"] != pytest.approx(0.0, abs=1e-3)


@pytest.mark.slow  # three short runs: about a minute
def test_resume_continues_the_rollouts_an_uninterrupted_run_draws(make_cfg, word_llama, word_prompts, tmp_path):
    """The cut run's last.ckpt (step 8) is a mid-run one: its second batch took the steps 5-8 across 6."""
    from safetensors.torch import load_file

    from lft.runs.resume import resume_config

    common = ("strategy=full", "optimizer.lr=1e-2", "trainer.limit_train_batches=4",
              "callbacks.last_checkpoint.every_n_steps=6")
    whole = train(_rl_cfg(make_cfg, word_llama, word_prompts, "ppo", *common, "trainer.max_steps=16"))
    cut = _rl_cfg(make_cfg, word_llama, word_prompts, "ppo", *common, "trainer.max_steps=8", out="cut")
    train(cut)
    resumed = train(resume_config(cut.paths.output_dir, ["trainer.max_steps=16"]))
    assert resumed["optimizer_steps"] == whole["optimizer_steps"] == 16 and resumed["resumed"]
    a = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert "value_head.weight" in a and a["value_head.weight"].abs().sum() > 0  # the critic trained and was saved
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_checkpoints_every_n_steps_count_the_steps_a_batch_crosses(make_cfg, word_llama, word_prompts, tmp_path,
                                                                     caplog):
    """4 updates per batch, checkpoints every 6 steps: after the batches ending at steps 8 and 12 (not only at
    multiples of 6 that global_step lands on: 12, 24, ...), last.ckpt and the model checkpoint alike."""
    import logging

    caplog.set_level(logging.INFO, logger="lft")
    train(_rl_cfg(make_cfg, word_llama, word_prompts, "ppo", "strategy=lora", "trainer.max_steps=16",
                  "trainer.limit_val_batches=1", "callbacks.last_checkpoint.every_n_steps=6",
                  "+callbacks.model_checkpoint.every_n_train_steps=6", "callbacks.model_checkpoint.monitor=null",
                  "callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.filename='step{step}'"))
    saved = [int(m) for m in re.findall(r"last\.ckpt at optimizer step (\d+) \(every 6 steps\)", caplog.text)]
    assert saved == [8, 12]  # step 16 ends the run at the epoch's end: saved after its validation instead
    assert {p.name for p in (tmp_path / "run" / "checkpoints").glob("step*.ckpt")} >= {"step8.ckpt", "step12.ckpt"}


@pytest.fixture
def classifier_run(make_cfg, tiny_bert, tmp_path):
    """A finished lft sentiment classification run (negative/positive) of a tiny BERT."""
    train(make_cfg(f"model.name_or_path={tiny_bert}", "trainer.limit_train_batches=2", "test=false", out="classifier"))
    return tmp_path / "classifier"


def test_a_classifier_run_rewards_with_its_label_probability(classifier_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lft.config.errors import ConfigError
    from lft.rewards.scorers import RunReward

    reward = RunReward(classifier_run, "positive")
    prompts, responses = ["a great", "an awful"], [" film, loved it", " film, hated it"]
    scores = reward(prompts, responses, [[1], [1]], torch.device("cpu"))
    model = AutoModelForSequenceClassification.from_pretrained(classifier_run / "model").eval()  # loaded independently
    tokenizer = AutoTokenizer.from_pretrained(classifier_run / "model")
    with torch.no_grad():
        probs = model(**tokenizer([p + r for p, r in zip(prompts, responses, strict=True)], return_tensors="pt",
                                  padding=True)).logits.softmax(-1)
    torch.testing.assert_close(scores, probs[:, model.config.label2id["positive"]])
    assert not any(p.requires_grad for p in reward.model.parameters())
    with pytest.raises(ConfigError, match="reward.label='neutral' is not a label"):
        RunReward(classifier_run, "neutral")


@pytest.mark.slow  # a classifier run, then a policy run rewarded by it: about 45 s
def test_rloo_trains_against_a_classifier_run(make_cfg, classifier_run, word_llama, word_prompts):
    cfg = make_cfg(f"model.name_or_path={word_llama}", "model.dtype=null", f"data.path={word_prompts}",
                   "data.task=rloo", "data.max_length=16", "data.batch_size=4", "data.monitor.metric=val/reward",
                   "data.monitor.mode=max", f"reward.run={classifier_run}", "reward.label=positive",
                   "rl.max_new_tokens=4", "rl.samples_per_prompt=2", "rl.mini_batch_size=8", "strategy=lora",
                   "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false", out="policy")
    metrics = train(cfg)
    assert 0 < metrics["val/reward"] < 1 and metrics["optimizer_steps"] == 4  # 2 batches x 2 epochs x 1 minibatch
