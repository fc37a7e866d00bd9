"""meta_train_lowering_inner_lr: a diverging run is discarded and retried at the next rate."""

from __future__ import annotations

import pytest

from metamap.errors import DataError
from metamap.learners import make_learner
from metamap.nn import MLP
from metamap.tasks import Sinusoid
from metamap.training import TrainConfig
from metamap.training.retry import meta_train_lowering_inner_lr

CONFIG = TrainConfig(steps=5, meta_batch=4, lr=1e-3, seed=0, checkpoint_every=0, progress=False)


def _build(inner_lr: float):
    return make_learner("maml", MLP(1, [8], 1), inner_steps=3, inner_lr=inner_lr)


def test_falls_back_to_the_next_rate_after_a_nan_meta_loss(capsys):
    learner = meta_train_lowering_inner_lr(_build, Sinusoid(k_shot=5), CONFIG, label="toy", inner_lrs=(1e12, 0.01))
    assert learner.inner_lr == 0.01
    assert "[toy]" in capsys.readouterr().out


def test_every_rate_diverging_is_a_clear_error():
    with pytest.raises(DataError, match="toy diverged at every inner rate"):
        meta_train_lowering_inner_lr(_build, Sinusoid(k_shot=5), CONFIG, label="toy", inner_lrs=(1e12, 1e13))
