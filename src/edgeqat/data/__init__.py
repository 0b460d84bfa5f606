"""Reading raw data sources and writing/reading the prepared, sharded splits."""
