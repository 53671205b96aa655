"""logger=mlflow: Lightning's MLFlowLogger with a local store by default, ending a run with lft's results in it.

Without a tracking URI (tracking_uri, MLFLOW_TRACKING_URI) runs go to a local store in store_dir: SQLite, since
MLflow 3 refuses to create file stores, with each experiment's artifacts in store_dir/artifacts/<experiment>.
A finished run's numbers are in metrics.json (test scores, best validation value, time, memory): they go to the
MLflow run as its final metrics, at the last optimizer step, so a table of runs shows them as the latest values.
The weights folder the run wrote (adapter/ or model/) goes to its artifacts where log_weights is on. Naming and
grouping (experiment per sweep, run names, override tags) are filled from config in lft.training.loggers.
"""

from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger

DATABASE = "mlflow.db"


class MLflowLogger(MLFlowLogger):
    def __init__(self, *, experiment_name: str, store_dir: str | None = None, tracking_uri: str | None = None,
                 artifact_location: str | None = None, log_weights: bool = True, **kwargs):
        if not tracking_uri:
            store = Path(store_dir or "mlflow").resolve()
            store.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{store / DATABASE}"
            artifact_location = artifact_location or (store / "artifacts" / experiment_name).as_uri()
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri,
                         artifact_location=artifact_location, **kwargs)
        self.log_weights = log_weights

    def log_final(self, metrics: dict) -> None:
        """metrics.json's numbers as final metrics; the weights folder (metrics["weights_dir"]) as an artifact."""
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.log_metrics(numbers, step=int(metrics.get("optimizer_steps", 0)))
        weights = metrics.get("weights_dir")
        if self.log_weights and weights and Path(weights).is_dir():
            self.experiment.log_artifacts(self.run_id, str(weights), artifact_path=Path(weights).name)
