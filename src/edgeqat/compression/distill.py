"""Knowledge distillation for fine-tuning a pruned or clustered model: the FP32 model it came
from is the teacher, and its softened outputs are an extra target beside the labels.

Channel pruning of residual streams leaves a model near chance (its BatchNorm statistics
and the next layers' inputs no longer match), and on a small dataset the labels alone
retrain it slowly; the teacher's soft labels carry what every class looks like to the
original model (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network").
loss = (1 - alpha) * CE(labels, student) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)).
"""

from __future__ import annotations

from typing import Any

from edgeqat.errors import ConfigError

TEMPERATURE = 4.0  # Hinton et al.'s range is 2-20; 4 is the common choice for 10 classes


def distiller(student: Any, teacher: Any, alpha: float, learning_rate: Any,
              temperature: float = TEMPERATURE, key: str = "prune.channel_distillation") -> Any:
    """A compiled Keras model whose ``fit`` trains ``student`` toward labels and ``teacher``
    (its loss is the hard-label term, its validation metrics are the student's own)."""
    from edgeqat.models.training import compile_classifier, outputs_logits
    from edgeqat.tf_compat import keras, tf

    if not 0 <= alpha <= 1:
        raise ConfigError(f"{key} must be in [0, 1] (got {alpha})")
    teacher_logits, student_logits = outputs_logits(teacher), outputs_logits(student)
    teacher.trainable = False

    def logits(y: Any, are_logits: bool) -> Any:  # a softmax head's outputs, back to logits
        return y if are_logits else tf.math.log(tf.clip_by_value(y, 1e-7, 1.0))

    class Distiller(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{student.name}_distiller")
            self.student, self.teacher = student, teacher

        def call(self, x: Any, training: bool = False) -> Any:
            return self.student(x, training=training)

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data
            soft = tf.nn.softmax(logits(self.teacher(x, training=False), teacher_logits) / temperature)
            with tf.GradientTape() as tape:
                out = self.student(x, training=True)
                hard_loss = self.compiled_loss(y, out, regularization_losses=self.student.losses)
                log_p = tf.nn.log_softmax(logits(out, student_logits) / temperature)
                kl = tf.reduce_mean(tf.reduce_sum(soft * (tf.math.log(tf.clip_by_value(soft, 1e-7, 1.0)) - log_p), -1))
                loss = (1 - alpha) * hard_loss + alpha * temperature**2 * kl
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
            self.compiled_metrics.update_state(y, out)
            # "loss" is the hard-label term's running mean, comparable with val_loss
            return {m.name: m.result() for m in self.metrics}

    trainer = Distiller()
    # the wrapper has no head of its own: the student's tells whether outputs are logits
    compile_classifier(trainer, learning_rate, from_logits=student_logits)
    return trainer
