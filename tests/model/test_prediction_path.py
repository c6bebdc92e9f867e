"""Predictions for evaluation, the guards and consumers: equal to Keras's predict, without retracing."""

from __future__ import annotations

import logging

import keras
import numpy as np

from models.config import ModelConfig
from models.dataset.windows import gather
from models.training.evaluation import predict_windows
from models.training.network import build_model, forward


def test_many_models_in_one_process_predict_without_tf_function_retracing(caplog):
    # A run evaluates its new model and the champion, and the guards probe every epoch; TensorFlow
    # warned "triggered tf.function retracing" once a champion existed, because each model and each
    # last, smaller batch traced model.predict's function again.
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(2600, 6)).astype("float32")
    ends = np.arange(9, 2561)  # 2552 test windows, as in the demo: batches of 2048 and 504
    models = []
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for seed in range(4):  # new models and champions of consecutive runs, probes of the guards
            keras.utils.set_random_seed(seed)
            models.append(build_model(ModelConfig(lstm_units=(4,)), 10, 6))
            assert predict_windows(models[-1], matrix, ends, 10).shape == (2552, 3)
            assert predict_windows(models[-1], matrix, ends[:100], 10).shape == (100, 3)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    x = gather(matrix, ends, 10)
    for model in models[:2]:
        np.testing.assert_allclose(forward(model, x), model.predict(x, verbose=0), atol=1e-6)


def test_a_fixed_batch_model_gets_full_batches_and_its_padding_dropped():
    model = build_model(ModelConfig(lstm_units=(4,), stateful=True), 10, 6, batch_size=32)
    x = np.random.default_rng(1).normal(size=(70, 10, 6)).astype("float32")
    assert forward(model, x).shape == (70, 3)
    assert forward(model, x[:0]).shape == (0, 3)
