"""bench/throughput.py end to end on its CPU-sized synthetic Llama case: the GPU bench's code path, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "throughput.py"


def test_synthetic_llama_case_runs_lft_and_the_bare_loop_on_the_same_rows(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}  # model, rows and runs under tmp_path
    subprocess.run([sys.executable, str(BENCH), "--case", "llama_tiny_synthetic", "--train-size", "32",
                    "--eval-size", "16", "--systems", "lft,bare_loop", "--repeats", "1", "--packing",
                    "--out", str(out)], check=True, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    lft, bare = result["best"]["lft"], result["best"]["bare_loop"]
    assert lft["real_tokens"] == bare["real_tokens"] > 0  # identical work
    assert lft["metric"]["tokens"] == bare["metric"]["tokens"] > 0
    assert lft["model_tflops_per_s"] > 0 and lft["mfu"] is None  # no GPU peak to divide by on a CPU
    assert (tmp_path / "lft-bench" / "llama_tiny" / "config.json").exists()
