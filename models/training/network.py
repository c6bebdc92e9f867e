"""The LSTM classifier: a Keras 3 builder from ModelConfig."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from models.config import ModelConfig, TrainingConfig

INPUT_NAME = "window"
OUTPUT_NAME = "direction"


def build_model(
    config: ModelConfig,
    window: int,
    n_features: int,
    batch_size: int | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A stack of LSTM layers and a dense head of `config.output_width` units.

    With the default softmax head the model outputs class probabilities. A linear head outputs
    logits and is compiled with `from_logits=True`. A sigmoid head is built as asked, and then
    refused by the training preflight (it does not give probabilities over exclusive classes).

    With `seed`, every initializer and dropout mask gets its own seed derived from it, so the weights
    do not depend on what else consumed the process's global random state (Keras draws unseeded
    initializers' seeds from Python's `random`, which a Dask worker's or Prefect's threads also use).
    """
    seeds = iter(range(seed * 1000, seed * 1000 + 1000)) if seed is not None else None

    def next_seed() -> int | None:
        return next(seeds) if seeds is not None else None

    if config.stateful:
        # Stateful layers need a fixed batch: state i of one batch seeds sample i of the next.
        inputs = layers.Input(batch_shape=(batch_size, window, n_features), name=INPUT_NAME)
    else:
        inputs = layers.Input(shape=(window, n_features), name=INPUT_NAME)
    stack: list[layers.Layer] = [inputs]
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        stack.append(
            layers.LSTM(
                units,
                return_sequences=not last,
                dropout=config.dropout,
                recurrent_dropout=config.recurrent_dropout,
                stateful=config.stateful,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
                recurrent_initializer=keras.initializers.Orthogonal(seed=next_seed()),
                seed=next_seed(),
                name=f"lstm_{i}",
            )
        )
    activation = None if config.output_activation == "linear" else config.output_activation
    stack.append(
        layers.Dense(
            config.output_width,
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next_seed()),
            name=OUTPUT_NAME,
        )
    )
    return keras.Sequential(stack, name=config.name.replace("-", "_"))


def compile_model(model: keras.Model, model_config: ModelConfig, training: TrainingConfig) -> None:
    """Adam + sparse categorical cross-entropy on integer class ids 0..2."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=training.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=model_config.output_activation == "linear"
        ),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def forward(model: keras.Model, x: np.ndarray, batch: int = 2048) -> np.ndarray:
    """The model's outputs for `x`, in batches, computed eagerly.

    Not `model.predict`: that traces a tf.function per model and per input shape (a last, smaller
    batch is another shape), and evaluating a new model beside its champion, or the guards'
    probes, retraced often enough for TensorFlow to warn about it on every run. An eager call traces
    nothing and is as fast at these sizes. A model with a fixed batch size (stateful) gets batches of
    exactly that size, the last one padded with zeros and its padding dropped.
    """
    fixed = model.inputs[0].shape[0]
    size = fixed or batch
    outputs = []
    for start in range(0, len(x), size):
        chunk = x[start : start + size]
        rows = len(chunk)
        if fixed and rows < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - rows, *chunk.shape[1:]), dtype=chunk.dtype)])
        outputs.append(keras.ops.convert_to_numpy(model(chunk, training=False))[:rows])
    if not outputs:
        return np.zeros((0, *model.outputs[0].shape[1:]), dtype=np.float32)
    return np.concatenate(outputs)
