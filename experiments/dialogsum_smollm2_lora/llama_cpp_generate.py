"""Greedy summaries from the exported GGUF file with llama.cpp (llama-cpp-python), for the dialogues in a JSONL file.

The prompt is built as lft builds it at training (the run's data.template inside the exported tokenizer's chat
template), so its output sits beside `lft.generate run=... prompts=<the same file>`:
    python experiments/dialogsum_smollm2_lora/llama_cpp_generate.py <run> <export folder> <dialogues.jsonl> [max tokens]
"""

import json
import sys
from pathlib import Path

import llama_cpp
from transformers import AutoTokenizer

from lft.runs.folder import load_run_config


def main(run: str, export_dir: str, dialogues: str, max_tokens: int = 64) -> None:
    export = Path(export_dir)
    gguf_file = next(export.glob("*.gguf"))
    template = load_run_config(run).data.template
    tokenizer = AutoTokenizer.from_pretrained(export)
    llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=1024, verbose=False, seed=0)
    for line in Path(dialogues).read_text().splitlines():
        row = json.loads(line)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": template.format(**row)}], tokenize=False,
                                               add_generation_prompt=True)
        reply = llm(prompt, max_tokens=max_tokens, temperature=0.0, top_k=1)["choices"][0]["text"]
        print(json.dumps({"id": row.get("id"), "llama.cpp": reply.strip()}))
    llm.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:]))
