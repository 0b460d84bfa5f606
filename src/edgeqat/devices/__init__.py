"""Target device profiles and emulated validation."""
