"""A model's life after the pipeline: MLflow tracking and the live run, the registry store,
promotion and its gates, the managed models, and the webhook receiver's policy and state. Only
tracking, live_run and registry import mlflow; the rest take a registry object."""
