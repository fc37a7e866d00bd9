"""Settings of the speed benchmark (Finn et al.'s sinusoid protocol) and the inputs every method shares."""

from __future__ import annotations

from typing import Any

import torch

from metamap.nn.mlp import MLP
from metamap.seeding import seeded
from metamap.tasks import Episode, Sinusoid, make_generator

HIDDEN = (40, 40)
K_SHOT = 5
N_QUERY = 10
META_BATCH = 25
INNER_LR = 0.01
OUTER_LR = 1e-3
INNER_STEPS = (1, 5)
SEED = 0
N_EPISODES = 16
THREADS = 1
GRAD_RTOL = 1e-4

METHODS = ("metamap", "metamap_vmap", "loop", "higher", "torchopt_metasgd", "torchopt_vmap")
PEERS = ("higher", "torchopt_metasgd", "torchopt_vmap")
PER_TASK_PEERS = ("higher", "torchopt_metasgd")
LIBRARY = {"higher": "higher", "torchopt_metasgd": "torchopt", "torchopt_vmap": "torchopt"}


def repetitions(quick: bool) -> dict[str, Any]:
    """Repetition settings: full finishes in a few minutes on a quiet machine."""
    if quick:
        return {"rounds": 2, "target_s": 0.03, "warmup_steps": 1, "min_steps": 2}
    return {"rounds": 7, "target_s": 1.0, "warmup_steps": 5, "min_steps": 5}


def make_episodes(n: int = N_EPISODES, seed: int = SEED, n_tasks: int = META_BATCH) -> list[Episode]:
    """``n`` sinusoid meta-batches (x, y ``[n_tasks, 5 or 10, 1]``), the same for every method."""
    family = Sinusoid(k_shot=K_SHOT, n_query=N_QUERY)
    gen = make_generator(seed)
    return [family.sample(n_tasks, gen) for _ in range(n)]


def initial_state(seed: int = SEED) -> dict[str, torch.Tensor]:
    """Initial weights of the sinusoid MLP, drawn from ``seed`` without touching the global RNG."""
    with seeded(seed):
        model = MLP(1, list(HIDDEN), 1)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sinusoid_model(state: dict[str, torch.Tensor]) -> MLP:
    """The sinusoid MLP holding the weights ``state``."""
    model = MLP(1, list(HIDDEN), 1)
    model.load_state_dict(state)
    return model
