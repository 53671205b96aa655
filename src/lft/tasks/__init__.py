"""Task families. A task turns raw splits into batches, builds the model, and defines loss and metrics.

Every task offers the `Task` protocol (tasks/protocol.py), used by train(), evaluate() and the Lightning module.
A task is built once, by build_task, with everything it needs (data config, the run's `augment`, DPO's reference)
and never changes after: `encode(tokenizer, seed, cache_dir)` loads, checks and tokenizes the data (before any
model loads, leaving the tokenizer as it was) and returns an immutable `Encoded` (the datamodule, and what
encoding learned: the label set, the generator, the prompt format), which the run passes back to
build_model, metrics, evaluate and take_samples.

`data.task` names what the data is; the model's architecture picks the code for text-to-text data:
  classification   text (+ pair) -> label                         ClassificationTask
  seq2seq          template(source columns) -> target text        Seq2SeqTask on encoder-decoders (T5, BART),
                                                                  CausalLMTask (prompt mode) on decoder-only LMs
  causal_lm        raw text, chunked into blocks                  CausalLMTask (raw-text mode), decoders only
  chat             conversations -> loss on the assistant's turns ChatTask (the chat template), decoders only
  dpo              (prompt, chosen, rejected) -> policy            DpoTask (sigmoid DPO, IPO, SimPO, ORPO), decoders;
                   or unpaired (prompt, completion, label)        KtoTask (data.preference.loss=kto)
  reward           (prompt, chosen, rejected) -> one score         RewardTask (Bradley-Terry), encoder or decoder
  mixture          several of the generative data configs above   MixtureTask (data/mixture.py: weighted draws)
  ppo, rloo        prompts -> a policy trained online on a reward   PolicyTask (tasks/rl.py), decoders; the run's
                                                                  `rl` and `reward` settings
So one data config (e.g. `dialogsum`) trains flan-T5 and SmolLM2 alike; decoders read the same template.
"""

from lft.config.errors import ConfigError
from lft.data.augment import check_augment, is_on
from lft.data.lengths import fit_lengths
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.chat import ChatTask
from lft.tasks.classification import ClassificationTask
from lft.tasks.kto import KtoTask
from lft.tasks.mixture import MixtureTask
from lft.tasks.preference import DpoTask, RewardTask
from lft.tasks.protocol import Encoded, Task
from lft.tasks.rl import ALGORITHMS, PolicyTask
from lft.tasks.seq2seq import Seq2SeqTask

__all__ = ["TASKS", "Encoded", "Task", "build_task"]
TASKS = {"classification": ClassificationTask, "seq2seq": Seq2SeqTask, "causal_lm": CausalLMTask,
         "chat": ChatTask, "dpo": DpoTask, "reward": RewardTask,
         **dict.fromkeys(ALGORITHMS, PolicyTask)}


def build_task(data_cfg, model_cfg=None, augment=None, prefix: str = "data", policy_is_reference: bool = False,
               run_cfg=None) -> Task:
    """The task data_cfg names; augment (the run's `augment` settings) is applied when it encodes the train split.

    With model_cfg, the data's length settings are fitted to the model's positions first (data/lengths.py);
    prefix names data_cfg in messages (a mixture's member: data.members.<name>). policy_is_reference: DPO or
    online RL scored on a base model (lft.evaluate), which is its own reference. run_cfg: the whole run's config,
    whose `rl`, `reward` and gradient clipping online RL reads (None: its prompts alone, for lft.generate)."""
    name = data_cfg.get("task")
    if name == "mixture":  # each member is built (and checked) by this function
        return MixtureTask(data_cfg, lambda cfg, member: build_task(cfg, model_cfg, augment, prefix=member))
    if name not in TASKS:
        raise ConfigError(f"data.task={name!r} is unknown; choose one of {', '.join([*TASKS, 'mixture'])}.")
    augment = augment if is_on(augment) else None
    if name in ("seq2seq", "causal_lm", "chat") and model_cfg is not None:
        task = _generative_task(name, data_cfg, model_cfg, augment)
    elif name == "dpo":
        kto = (data_cfg.get("preference") or {}).get("loss") == "kto"
        task = (KtoTask if kto else DpoTask)(data_cfg, model_cfg, policy_is_reference=policy_is_reference)
    elif name == "reward":
        task = RewardTask(data_cfg)
    elif name in ALGORITHMS:
        if run_cfg is None:  # lft.generate: the prompts alone, formatted as in training
            task = PolicyTask(name, data_cfg, model_cfg)
        else:
            clip = (run_cfg.trainer.get("gradient_clip_val"), run_cfg.trainer.get("gradient_clip_algorithm") or "norm")
            task = PolicyTask(name, data_cfg, model_cfg, run_cfg.rl, run_cfg.reward, gradient_clip=clip,
                              policy_is_reference=policy_is_reference)
    else:
        task = TASKS[name](data_cfg, augment=augment)
    if model_cfg is not None:
        from lft.models.loading import load_config

        fit_lengths(data_cfg, load_config(model_cfg), model_cfg.name_or_path, prefix)
    if augment is not None:
        check_augment(augment, name)
    if data_cfg.get("packing") and not isinstance(task, CausalLMTask):
        raise ConfigError(f"data.packing=true packs text for decoder-only LMs (data.task=seq2seq on a decoder, or "
                          f"causal_lm); it does not apply to {type(task).__name__}. Set data.packing=false "
                          "(data.group_by_length=true cuts padding there).")
    return task


def _generative_task(name: str, data_cfg, model_cfg, augment):
    from lft.models.loading import is_encoder_decoder

    encoder_decoder = is_encoder_decoder(model_cfg)
    if name in ("causal_lm", "chat") and encoder_decoder:
        what = "raw text" if name == "causal_lm" else "conversations"
        raise ConfigError(
            f"data.task={name} ({what}) needs a decoder-only model, but model.name_or_path="
            f"{model_cfg.name_or_path!r} is an encoder-decoder; use a decoder (model=gpt2, model=smollm2_135m) "
            "or text-to-text data (data.task=seq2seq)."
        )
    if name == "seq2seq" and not encoder_decoder:
        if not data_cfg.get("template"):
            raise ConfigError(
                f"data.task=seq2seq on the decoder-only model {model_cfg.name_or_path!r} needs a prompt template: "
                "set data.template (e.g. 'Summarize: {dialogue}\\nSummary: ') so the model knows where the "
                "response starts, or use an encoder-decoder model (model=flan_t5_base)."
            )
        return CausalLMTask(data_cfg, augment=augment)
    return TASKS[name](data_cfg, augment=augment)
