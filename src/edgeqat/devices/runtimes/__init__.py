"""Runtimes a device profile runs a model on.

``base``: the :class:`~edgeqat.devices.runtimes.base.Runtime` interface and the table of
runtimes by profile ``runtime:`` name; ``registry``: the Runtime a profile names. One module
each: ``litert`` (LiteRT on this host), ``tflm`` (TensorFlow Lite Micro in a child process),
``vela`` (Arm Ethos-U through Vela). ``measured``: a device that is really there (``connect:``
in its profile): a board over SSH or this host; ``device_runner`` is the standalone script that
runs there.
"""
