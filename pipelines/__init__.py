"""The Kubeflow Pipelines DAG (edge_pipeline.py), its compiled YAML and the commands around
it (ops.py). Installed as ``edgeqat.pipelines``; importing this package imports nothing."""
