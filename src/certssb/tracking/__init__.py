"""MLflow: per-method runs and their names (``runs``), one tracking database per project (``uri``)."""
