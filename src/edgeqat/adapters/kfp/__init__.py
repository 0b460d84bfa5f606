"""The Kubeflow Pipelines adapter: parameters (params.py), the generated lightweight
components (codegen.py -> components/generated.py), and what a component body calls
(runner.py). The DAG itself is pipelines/edge_pipeline.py; nothing here is imported by
`edgeqat --help`."""
