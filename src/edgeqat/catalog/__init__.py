"""The named entries params.yaml chooses from: compression variants (``variants``) and data
sources (``datasources``), one entry each. Foundation level: config.py validates names against them."""
