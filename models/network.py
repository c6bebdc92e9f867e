"""The LSTM classifier: a Keras 3 builder from ModelConfig."""

from __future__ import annotations

import keras
from keras import layers

from models.config import ModelConfig, TrainingConfig

INPUT_NAME = "window"
OUTPUT_NAME = "direction"


def build_model(config: ModelConfig, window: int, n_features: int) -> keras.Model:
    """A stack of LSTM layers and a dense head of `config.output_width` units.

    With the default softmax head the model outputs class probabilities. A linear head outputs
    logits and is compiled with `from_logits=True`. A sigmoid head is built as asked, and then
    refused by the training preflight (it does not give probabilities over exclusive classes).
    """
    stack: list[layers.Layer] = [layers.Input(shape=(window, n_features), name=INPUT_NAME)]
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        stack.append(
            layers.LSTM(
                units,
                return_sequences=not last,
                dropout=config.dropout,
                recurrent_dropout=config.recurrent_dropout,
                name=f"lstm_{i}",
            )
        )
    activation = None if config.output_activation == "linear" else config.output_activation
    stack.append(layers.Dense(config.output_width, activation=activation, name=OUTPUT_NAME))
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


def classic_preset(name: str = "updown") -> ModelConfig:
    """The classic 2 x LSTM(50), dropout 0.2, recurrent_dropout 0.2 architecture, with a softmax head."""
    return ModelConfig(name=name, lstm_units=(50, 50), dropout=0.2, recurrent_dropout=0.2)
