"""The code of every model edgeqat registers in MLflow (a pyfunc "model from code").

MLflow loads this file by path when the model is loaded (``mlflow.pyfunc.load_model``,
``mlflow models serve --env-manager local``); it is shipped with the model together with the
few edgeqat modules it imports, so predicting needs mlflow, numpy, pandas and ai-edge-litert,
never TensorFlow. Nothing in the package imports it.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class TFLiteModel(PythonModel):
    """Raw uint8 images (N, H, W[, C]) -> class_index, class_name, probability, probabilities."""

    # The signature is given explicitly when the model is saved; without this MLflow would wrap
    # predict() for type-hint validation and warn that it has no hints.
    _skip_type_hint_validation = True

    def load_context(self, context):
        from edgeqat.quantization.classifier import CardClassifier

        self.clf = CardClassifier(context.artifacts["tflite"])  # the model card lands beside it

    def predict(self, context, model_input, params=None):
        import pandas as pd

        return pd.DataFrame(self.clf.predict(model_input))


mlflow.models.set_model(TFLiteModel())
