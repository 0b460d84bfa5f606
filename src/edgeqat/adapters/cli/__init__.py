"""The `edgeqat` command line: thin commands over the steps and services (see edgeqat.adapters.cli.app)."""
