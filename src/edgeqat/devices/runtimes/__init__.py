"""Runtimes a device profile runs a model on.

``measured``: a device that is really there (``connect:`` in its profile): a board over SSH or
this host; ``device_runner`` is the standalone script that runs there. The LiteRT-on-host,
TFLM and Vela runtimes still live in ``edgeqat.devices`` (``validate``, ``tflm``, ``vela``).
"""
