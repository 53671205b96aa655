"""Batched generation and prompt-state reuse."""
