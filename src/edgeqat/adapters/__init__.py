"""Adapters: the ways a step is run (the CLI and DVC, Kubeflow Pipelines, the webhook receiver,
CI). They turn their world's inputs into a step call and its result back; no logic of a step
lives here. Everything they know about stages comes from :mod:`edgeqat.workspace.stages`."""
