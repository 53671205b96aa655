"""What each command does, from a validated config to its results: train, evaluate, generate, export.

The entry modules (lft/train.py ...) parse the command line and hand over here; the rooms below do the work."""
