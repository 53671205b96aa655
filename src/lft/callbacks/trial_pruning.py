"""Optuna pruning for a search job: report each validation's metric to the trial, stop the job when it lags.

The search (hydra/sweeper=lft with `pruner:` set) passes the journal, study, trial number and median-pruner
settings in LFT_SEARCH_* environment variables (hydra.job.env_set), so the job's own config stays as a plain
run's. The trial is reached through the journal file, so this works in a submitit/SLURM job as in-process.
"""

import os

from lightning.pytorch.callbacks import Callback

ENV = ("LFT_SEARCH_JOURNAL", "LFT_SEARCH_STUDY", "LFT_SEARCH_TRIAL", "LFT_SEARCH_PRUNER")
PRUNED = "TrialPruned"  # optuna.TrialPruned's name: what failed.json records and the sweeper reads back


class TrialPruning(Callback):
    def __init__(self, journal: str, study: str, number: int, n_startup_trials: int, n_warmup_steps: int,
                 metric: str) -> None:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(journal))
        pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
        study_obj = optuna.load_study(study_name=study, storage=storage, pruner=pruner)
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study), number)
        self.trial, self.metric = optuna.trial.Trial(study_obj, trial_id), metric

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        prune, message = False, ""
        if trainer.is_global_zero and self.metric in trainer.callback_metrics:
            value = float(trainer.callback_metrics[self.metric])
            self.trial.report(value, step=trainer.global_step)
            prune = self.trial.should_prune()
            message = (f"pruned at optimizer step {trainer.global_step}: {self.metric}={value:.6g} trails the "
                       "median of earlier trials at this step")
        if trainer.strategy.broadcast(prune, src=0):  # every DDP rank stops together
            import optuna

            raise optuna.TrialPruned(message or "pruned by the search")


def trial_pruning(metric: str) -> list[Callback]:
    """The pruning callback when this run is a search trial with a pruner, else nothing."""
    if not all(os.environ.get(k) for k in ENV):
        return []
    startup, warmup = (int(v) for v in os.environ["LFT_SEARCH_PRUNER"].split(","))
    return [TrialPruning(os.environ["LFT_SEARCH_JOURNAL"], os.environ["LFT_SEARCH_STUDY"],
                         int(os.environ["LFT_SEARCH_TRIAL"]), startup, warmup, metric)]
