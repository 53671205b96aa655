"""Small pure-function losses shared by tasks (tensors in, tensors out; no models, no config)."""
