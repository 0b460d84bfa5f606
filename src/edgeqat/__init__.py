"""edgeqat: Keras image model -> validated int8 TensorFlow Lite, as a reproducible pipeline.

Importing the package is cheap on purpose: TensorFlow is loaded only through
:mod:`edgeqat.tf_compat`, on first use.
"""

__version__ = "0.1.0"
