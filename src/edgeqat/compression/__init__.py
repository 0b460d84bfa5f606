"""Compression beyond plain QAT: magnitude pruning + pruning-preserving QAT, structured
channel pruning, per-layer mixed precision and quantization sensitivity."""
