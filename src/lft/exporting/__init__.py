"""Where an exported model goes beyond a Hugging Face folder: a GGUF file (llama.cpp, Ollama), a model card, the Hub.

lft.export (the entry point) writes the merged folder and calls these; each module holds one concern.
"""
