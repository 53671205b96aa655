"""Unit tests, one folder per room of src/lft (and unit/sweeper for hydra_plugins/lft_sweeper): each checks one
package's pieces on tiny random models, without going through an entry point (lft.train, lft.evaluate, ...)."""
