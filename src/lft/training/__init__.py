"""The LightningModule and what a fit needs: schedules, loss weighting, loggers, finders, engines."""
