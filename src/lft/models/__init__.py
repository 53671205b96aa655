"""Loading models and tokenizers; finding a model's blocks."""
