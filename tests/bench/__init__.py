"""Tests of the benchmark scripts in bench/ (their bookkeeping on tiny models; the full run is marked slow)."""
