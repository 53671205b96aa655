"""Metrics and ensembles of finished runs."""
