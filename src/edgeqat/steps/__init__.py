"""Pipeline steps: pure functions of (input paths, output paths, typed config) -> metrics dict.

Steps never open the parameters file or parse argv, and reach MLflow only through
``edgeqat.lifecycle.tracking``; the CLI (DVC stages), the KFP components and the tests all call
them the same way.
"""
