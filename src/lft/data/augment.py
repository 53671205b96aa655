"""Text augmentation of the training split, before tokenization: `augment=eda | synonym | back_translation | none`
(conf/augment/). Back-translation (a model rewrites rows) is in lft/data/back_translation.py; EDA is here.

EDA (Wei & Zou 2019, "Easy Data Augmentation"): each train row is changed with probability `augment.p`, by one
operation drawn from `augment.operations`:
  synonym  synonym replacement: n words (not stop words) each replaced by a WordNet synonym
  insert   random insertion: a synonym of a random word (not a stop word), inserted at a random place, n times
  swap     random swap: two random words trade places, n times
  delete   random deletion: each word is removed with probability alpha (one always stays)
with n = max(1, int(alpha * words)). `augment=synonym` is EDA with synonym replacement only. Synonyms come from
WordNet 3.0 (lft/data/wordnet.py), installed with lft; nothing is downloaded.

What changes: the train split only (validation and test rows stay as they are), in the task's input columns:
classification `data.text_column` (and `data.text_pair_column`); text-to-text tasks the source columns the
template reads, never the target, which is what the model learns to write (augmenting it would teach errors). Raw
text (`data.task=causal_lm`) is all target, and preference pairs compare two fixed answers, so both are refused.
`augment.columns` names other input columns.

Each row draws from its own RNG, seeded by the run's seed and the row's index in the train split: the result does
not depend on the order rows are processed in, nor on workers. Rows are augmented once per run (the tokenization
cache keys them with these settings), not again every epoch. Whitespace between words is kept (newlines between
dialogue turns survive); punctuation stays attached to its word.
"""

import hashlib
import json
import logging
import random
import re

from datasets import DatasetDict
from omegaconf import OmegaConf

from lft.config.errors import ConfigError

log = logging.getLogger(__name__)

NAMES = ("none", "eda", "synonym", "back_translation")
OPERATIONS = ("synonym", "insert", "swap", "delete")
NEEDS_WORDNET = ("synonym", "insert")
# Tasks whose input text can be augmented; the others learn from all of their text, or from fixed answer pairs.
TASKS = ("classification", "seq2seq")
# Bump when the augmentation code changes what it writes for the same inputs (part of the cache key).
AUGMENT_VERSION = 1

# EDA's stop words (Wei & Zou's list): never replaced, never the source of an inserted synonym.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself it
its itself they them their theirs themselves what which who whom this that these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over under again further
then once here there when where why how all any both each few more most other some such no nor not only own same so
than too very s t can will just don should now
""".split())
WORD = re.compile(r"^(\W*)([A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z])(\W*)$")


# --- configuration ----------------------------------------------------------------------------------------------
def is_on(augment_cfg) -> bool:
    return bool(augment_cfg) and augment_cfg.get("name", "none") != "none"


def operations(augment_cfg) -> list[str]:
    """The EDA operations drawn from: augment.operations, all four when unset."""
    ops = augment_cfg.get("operations")
    return list(OPERATIONS) if ops is None else list(ops)


def augment_settings(augment_cfg) -> dict | None:
    """What shapes augmented rows (for the tokenization cache key); None when augmentation is off."""
    if not is_on(augment_cfg):
        return None
    columns = augment_cfg.get("columns")
    common = {"version": AUGMENT_VERSION, "name": augment_cfg.name, "p": augment_cfg.p,
              "columns": list(columns) if columns else None}
    if augment_cfg.name == "back_translation":
        generate = augment_cfg.get("generate")
        return {**common, "model": augment_cfg.model, "prompts": list(augment_cfg.prompts),
                "generate": OmegaConf.to_container(generate, resolve=True) if generate else None}
    return {**common, "alpha": augment_cfg.alpha, "operations": operations(augment_cfg)}


def check_augment(augment_cfg, data_task) -> None:
    """One message per mistake, before anything loads: unknown names, operations, tasks it does not apply to,
    WordNet missing. (Ranges of p and alpha are in lft.config.schema.)"""
    if not augment_cfg:
        return
    name = augment_cfg.get("name")
    if name not in NAMES:
        raise ConfigError(f"augment.name={name!r} is unknown; choose augment=none, eda, synonym or back_translation.")
    if name == "none":
        return
    _check_task(name, data_task)
    if name == "back_translation":
        from lft.data.back_translation import check_back_translation

        check_back_translation(augment_cfg)
        return
    unknown = [op for op in operations(augment_cfg) if op not in OPERATIONS]
    if unknown or not operations(augment_cfg):
        raise ConfigError(f"augment.operations={list(augment_cfg.get('operations') or [])}: use a non-empty list "
                          f"of {', '.join(OPERATIONS)}.")
    if any(op in NEEDS_WORDNET for op in operations(augment_cfg)):
        from lft.data.wordnet import wordnet_folder

        wordnet_folder()


def _check_task(name: str, data_task) -> None:
    if data_task not in TASKS:
        why = {"causal_lm": "raw text is all target (the model learns to write it), so edited words would teach "
                            "it errors",
               "dpo": "preference pairs compare two fixed answers to one prompt",
               "reward": "preference pairs compare two fixed answers to one prompt"}.get(data_task, "")
        raise ConfigError(f"augment={name} does not apply to data.task={data_task}" + (f": {why}" if why else "")
                          + f"; it augments the input text of {' and '.join(TASKS)} data. Set augment=none.")


# --- the operations -----------------------------------------------------------------------------------------------
class Words:
    """A text as words and the whitespace after each, so edits keep line breaks and spacing."""

    def __init__(self, text: str):
        self.lead = re.match(r"\s*", text).group()
        self.pairs = [[m.group(1), m.group(2)] for m in re.finditer(r"(\S+)(\s*)", text)]

    def __len__(self) -> int:
        return len(self.pairs)

    def text(self) -> str:
        return self.lead + "".join(word + space for word, space in self.pairs)


def synonyms_of(token: str, wordnet) -> tuple[str, list[str], str]:
    """(leading punctuation, synonyms of the word, trailing punctuation); no synonyms for stop words and non-words."""
    match = WORD.match(token)
    if not match or match.group(2).lower() in STOP_WORDS:
        return "", [], ""
    before, word, after = match.groups()
    return before, [_cased(s, word) for s in wordnet.synonyms(word)], after


def _cased(synonym: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return synonym.upper()
    return synonym[:1].upper() + synonym[1:] if like[:1].isupper() else synonym


def synonym_replacement(words: Words, n: int, rng: random.Random, wordnet) -> None:
    """n distinct words (not stop words) that WordNet knows, each replaced by a random synonym everywhere."""
    candidates = list(dict.fromkeys(word for word, _ in words.pairs))
    rng.shuffle(candidates)
    replaced = 0
    for token in candidates:
        before, synonyms, after = synonyms_of(token, wordnet)
        if not synonyms:
            continue
        new = before + rng.choice(synonyms) + after
        for pair in words.pairs:
            if pair[0] == token:
                pair[0] = new
        replaced += 1
        if replaced >= n:
            break


def random_insertion(words: Words, n: int, rng: random.Random, wordnet) -> None:
    """n times: a synonym of a random word (not a stop word) inserted before a random word (10 tries each)."""
    for _ in range(n):
        for _ in range(10):
            _, synonyms, _ = synonyms_of(rng.choice(words.pairs)[0], wordnet)
            if synonyms:
                words.pairs.insert(rng.randrange(len(words)), [rng.choice(synonyms), " "])
                break


def random_swap(words: Words, n: int, rng: random.Random) -> None:
    """n times: two random words trade places (the spaces after them stay where they were)."""
    if len(words) < 2:
        return
    for _ in range(n):
        i = j = rng.randrange(len(words))
        for _ in range(3):
            j = rng.randrange(len(words))
            if j != i:
                break
        words.pairs[i][0], words.pairs[j][0] = words.pairs[j][0], words.pairs[i][0]


def random_deletion(words: Words, alpha: float, rng: random.Random) -> None:
    """Each word removed with probability alpha; if all would go, one random word stays."""
    if len(words) < 2:
        return
    keep = [rng.random() >= alpha for _ in words.pairs]
    if not any(keep):
        keep[rng.randrange(len(keep))] = True
    kept = []
    for pair, stays in zip(words.pairs, keep, strict=True):
        if stays:
            kept.append(pair)
        elif kept and "\n" in pair[1]:  # a removed word at a line end: the line break stays
            kept[-1][1] = pair[1]
    if not keep[-1]:  # the text ends as it did (no dangling space after the new last word)
        kept[-1][1] = words.pairs[-1][1]
    words.pairs = kept


def apply_operation(text: str, operation: str, alpha: float, rng: random.Random, wordnet=None) -> str:
    """One EDA operation on one text, drawing from rng."""
    words = Words(text)
    if not len(words):
        return text
    n = max(1, int(alpha * len(words)))
    if operation == "synonym":
        synonym_replacement(words, n, rng, wordnet)
    elif operation == "insert":
        random_insertion(words, n, rng, wordnet)
    elif operation == "swap":
        random_swap(words, n, rng)
    elif operation == "delete":
        random_deletion(words, alpha, rng)
    else:
        raise ValueError(f"unknown augmentation operation {operation!r}")
    return words.text()


def row_rng(seed: int, index: int) -> random.Random:
    """The RNG of one train row: a function of the run's seed and the row's index only."""
    return random.Random(f"lft-augment/{seed}/{index}")


def augment_row(row: dict, index: int, columns: list[str], augment_cfg, seed: int, wordnet=None,
                translator=None) -> dict:
    """The row with its columns augmented (one operation for all of them), or unchanged (probability 1 - p)."""
    rng = row_rng(seed, index)
    if rng.random() >= augment_cfg.p:
        return row
    if translator is not None:  # back-translation: the model rewrites each column
        torch_seed = rng.getrandbits(63)
        return {**row, **{c: translator(str(row[c]), torch_seed) for c in columns if row.get(c) is not None}}
    operation = rng.choice(operations(augment_cfg))
    return {**row, **{c: apply_operation(str(row[c]), operation, augment_cfg.alpha, rng, wordnet)
                      for c in columns if row.get(c) is not None}}


# --- splits -------------------------------------------------------------------------------------------------------
def augment_train(splits: DatasetDict, augment_cfg, columns: list[str | None], seed: int) -> tuple[DatasetDict, dict]:
    """(splits with the train split augmented, stats for the run's metrics); unchanged when augmentation is off.

    columns: the task's input columns (None entries skipped); `augment.columns` replaces them.
    """
    if not is_on(augment_cfg):
        return splits, {}
    columns = list(augment_cfg.get("columns") or [c for c in columns if c])
    train = splits["train"]
    missing = [c for c in columns if c not in train.column_names]
    if missing:
        raise ConfigError(f"augment.columns: {missing} not in the train split (columns: "
                          f"{', '.join(train.column_names)}); name input text columns, or set augment.columns=null.")
    wordnet = translator = None
    if augment_cfg.name == "back_translation":
        from lft.data.back_translation import BackTranslator

        translator = BackTranslator(augment_cfg)
    elif any(op in NEEDS_WORDNET for op in operations(augment_cfg)):
        from lft.data.wordnet import load_wordnet

        wordnet = load_wordnet()

    def augment_batch(batch: dict, indices: list[int]) -> dict:
        out = {c: [] for c in columns}
        out["_augmented"] = []
        for offset, index in enumerate(indices):
            row = {c: batch[c][offset] for c in columns}
            new = augment_row(row, index, columns, augment_cfg, seed, wordnet, translator)
            for c in columns:
                out[c].append(new[c])
            out["_augmented"].append(new != row)
        return out

    # The fingerprint names the inputs of the change, so datasets need not hash the function (and WordNet with it).
    settings = json.dumps({"from": train._fingerprint, "seed": seed, **augment_settings(augment_cfg),
                           "columns": columns}, sort_keys=True)
    augmented = train.map(augment_batch, batched=True, with_indices=True, desc="Augmenting train",
                          new_fingerprint=hashlib.sha256(settings.encode()).hexdigest()[:16])
    changed = sum(augmented["_augmented"])
    splits = DatasetDict({**splits, "train": augmented.remove_columns("_augmented")})
    how = f"model={augment_cfg.model}" if translator else \
        f"alpha={augment_cfg.alpha}, operations={','.join(operations(augment_cfg))}"
    log.info("augment=%s changed %d of %d train rows (p=%s, %s, columns=%s).", augment_cfg.name, changed, len(train),
             augment_cfg.p, how, ",".join(columns))
    return splits, {"augment/changed": changed, "augment/train_rows": len(train)}
