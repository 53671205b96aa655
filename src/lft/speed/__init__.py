"""Every path that computes the stock result faster.

contract.py lists each speed path, what it equals (bitwise, within the stock path's own error, or the same
distribution) and the model classes it applies to; check.py compares lft's training loss with the stock forward
on the first batch of a fit and falls back to the stock path where they differ.
"""
