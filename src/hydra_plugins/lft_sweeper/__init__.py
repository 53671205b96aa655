"""lft's Hydra sweeper: random or TPE search with Optuna >= 4, persisted to a journal file so a killed search resumes.

`hydra_plugins` is a namespace package (no __init__.py above this one): Hydra imports every module under it at
start-up and finds this sweeper and its config (`hydra/sweeper=lft`)."""
