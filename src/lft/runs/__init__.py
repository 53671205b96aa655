"""A run's folder: its layout, resume, the fresh-folder guard, what a run cost."""
