"""Data: raw splits from the Hub or local files, per-task encoding, the Lightning datamodule."""
