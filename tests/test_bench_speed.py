"""The speed benchmark compares like with like: every method's meta-gradient equals the plain loop's."""

from __future__ import annotations

import importlib

import pytest

from metamap.bench.speed.agreement import gradient_agreement
from metamap.bench.speed.inputs import GRAD_RTOL, initial_state, make_episodes


@pytest.fixture(scope="module")
def small():
    return initial_state(seed=3), make_episodes(n=1, seed=3, n_tasks=4)[0]


@pytest.mark.parametrize("inner_steps", [1, 3])
def test_metamap_maml_meta_gradient_equals_plain_loop(small, inner_steps):
    state, episode = small
    result = gradient_agreement(["metamap"], state, inner_steps, episode)["metamap"]
    assert result["ok"], result
    assert result["rel_err"] <= GRAD_RTOL


def test_agreement_check_catches_a_different_computation(small):
    """A first-order method must fail the check (the tolerance is not vacuous)."""
    state, episode = small
    from metamap.bench.speed import methods
    from metamap.learners import make_learner

    class _FirstOrder(methods.Metamap):
        name = "fomaml_probe"

        def __init__(self, state, inner_steps, inner_lr):
            methods.Method.__init__(self, state, inner_steps, inner_lr)
            self.learner = make_learner("fomaml", self.model, inner_steps=inner_steps, inner_lr=inner_lr)

    methods.CLASSES["fomaml_probe"] = _FirstOrder
    try:
        result = gradient_agreement(["fomaml_probe"], state, 1, episode)["fomaml_probe"]
    finally:
        del methods.CLASSES["fomaml_probe"]
    assert not result["ok"], result


def _higher_unavailable() -> str | None:
    try:
        importlib.import_module("higher")
    except Exception as exc:  # noqa: BLE001 - not installed, or broken against this torch
        return f"higher is not importable ({type(exc).__name__}: {exc}); pip install 'metamap[bench]'"
    return None


def test_higher_meta_gradient_equals_plain_loop(small):
    reason = _higher_unavailable()
    if reason:
        pytest.skip(reason)
    state, episode = small
    result = gradient_agreement(["higher"], state, 2, episode)["higher"]
    assert result["ok"], result
