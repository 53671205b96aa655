"""Config: the schema of every key, one validation, composing configs."""
