"""Pipeline steps: pure functions of (input paths, output paths, typed config) -> metrics dict.

Steps never read params.yaml, parse argv, or touch MLflow; the CLI (DVC), the KFP
components and the tests all call them the same way.
"""
