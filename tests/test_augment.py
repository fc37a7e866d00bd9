"""Generative task augmentation: generators, the augmented family (off by default), the traffic hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metamap.augment import AugmentedFamily, LatentDiffusion, PCAGaussian, PCASpace
from metamap.errors import ConfigError, DataError, ShapeError
from metamap.physics.augmentation import SyntheticSystems, synthetic_like
from metamap.physics.family import SystemFamily
from metamap.physics.systems import SYSTEMS
from metamap.tasks.family import make_generator

SMALL = {"train": 12, "val": 5, "test": 5}


def _family(**kwargs) -> SystemFamily:
    return SystemFamily(SYSTEMS["heat"], k_shot=6, n_query=8, noise=0.05, n_systems=SMALL, seed=3, **kwargs)


def _synthetic(real: SystemFamily, n: int = 7) -> SyntheticSystems:
    states = real.bank[1][:n] + 10.0  # far from every real trajectory: a synthetic task is recognisable
    return synthetic_like(real, states)


def _episodes_equal(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_support", "y_support", "x_query", "y_query"))


# -- the augmented family --------------------------------------------------------------------------------


def test_augmentation_is_off_by_default_and_changes_nothing():
    real = _family()
    for family in (AugmentedFamily(real), AugmentedFamily(real, _synthetic(real))):
        assert family.synthetic_fraction == 0.0
        for split in ("train", "val", "test"):
            got = family.split(split).sample(9, make_generator(5))
            want = real.split(split).sample(9, make_generator(5))
            assert _episodes_equal(got, want)
            assert torch.equal(got.meta["system"], want.meta["system"])


def test_synthetic_fraction_is_respected_in_train_only():
    real = _family()
    family = AugmentedFamily(real, _synthetic(real), synthetic_fraction=0.25)
    episode = family.sample(16, make_generator(0))
    flags = episode.meta["synthetic"]
    assert int(flags.sum()) == 4 and flags.shape == (16,)
    assert (episode.y_query[flags] > 5).all() and (episode.y_query[~flags] < 5).all()
    assert torch.isnan(episode.meta["params"][flags]).all() and torch.isfinite(episode.meta["params"][~flags]).all()
    assert episode.x_support.shape == (16, 6, 2) and episode.y_query.shape == (16, 8, 1)
    for split in ("val", "test"):
        assert _episodes_equal(
            family.split(split).sample(8, make_generator(1)), real.split(split).sample(8, make_generator(1))
        )
    assert bool(AugmentedFamily(real, _synthetic(real), 1.0).sample(5, make_generator(0)).meta["synthetic"].all())


def test_augmented_family_is_reproducible_and_delegates():
    real = _family()
    family = AugmentedFamily(real, _synthetic(real), 0.5)
    assert _episodes_equal(family.sample(6, make_generator(2)), family.sample(6, make_generator(2)))
    assert family.system is real.system and family.k_shot == 6


def test_augmented_family_bad_settings():
    real = _family()
    with pytest.raises(ConfigError, match="synthetic_fraction"):
        AugmentedFamily(real, _synthetic(real), 1.5)
    with pytest.raises(ConfigError, match="needs a synthetic family"):
        AugmentedFamily(real, None, 0.5)
    with pytest.raises(ShapeError, match="expected states"):
        synthetic_like(real, np.zeros((3, 10, 1)))


def test_synthetic_systems_train_a_learner():
    """Meta-training on a half-synthetic family runs (NaN parameters break nothing)."""
    from metamap.physics.experiment import train_learners

    real = SystemFamily(SYSTEMS["pendulum"], k_shot=5, n_query=5, n_systems=SMALL, seed=0)
    family = AugmentedFamily(real, synthetic_like(real, real.bank[1][:4] * 0.5), 0.5)
    learners = train_learners(family, ["maml"], steps=3, seed=0)
    assert set(learners) == {"maml", "pretrain"}


# -- generators --------------------------------------------------------------------------------------------


def _gaussian_data(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    root = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.3, 0.2, 0.3]], dtype=torch.float64)
    data = mean + torch.randn(n, 3, generator=g, dtype=torch.float64) @ root.T
    return data, mean, root @ root.T


def test_pca_gaussian_recovers_mean_and_covariance():
    data, mean, cov = _gaussian_data()
    model = PCAGaussian(keep_variance=1.0).fit(data)
    draws = model.sample(20000, make_generator(1)).double()
    assert draws.shape == (20000, 3) and draws.dtype in (torch.float32, torch.float64)
    assert torch.allclose(draws.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(draws.T), cov, atol=0.06)


def test_pca_space_keeps_the_asked_variance_and_round_trips():
    data, _, _ = _gaussian_data()
    space = PCASpace(keep_variance=0.9)
    latents = space.fit(data)
    assert space.dims < 3 and space.explained >= 0.9 and latents.shape == (4000, space.dims)
    assert torch.allclose(latents.std(0), torch.ones(space.dims, dtype=torch.float64), atol=1e-6)
    full = PCASpace(keep_variance=1.0)
    assert torch.allclose(full.decode(full.fit(data)).double(), data, atol=1e-4)
    assert PCASpace().fit(data[:4]).shape[1] <= 3  # capped by n - 1


@pytest.mark.parametrize("model", [PCAGaussian(), LatentDiffusion(train_steps=5, width=8, depth=1)])
def test_generators_are_reproducible_with_shapes(model):
    data = torch.randn(20, 11, generator=make_generator(0))
    model.fit(data)
    a, b = model.sample(6, make_generator(4)), model.sample(6, make_generator(4))
    assert a.shape == (6, 11) and torch.equal(a, b)
    assert not torch.equal(a, model.sample(6, make_generator(5)))


def test_latent_diffusion_draws_near_two_clusters():
    """On two tight clusters the draws land on them; the Gaussian's draws fill the gap between them."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 3.0, 0.0, 1.0], [-3.0, -3.0, 0.0, -1.0]], dtype=torch.float64)
    data = centres[torch.arange(64) % 2] + 0.05 * torch.randn(64, 4, generator=g, dtype=torch.float64)
    model = LatentDiffusion(train_steps=1000, batch=128, ema=0.99, seed=0).fit(data)
    draws = model.sample(64, make_generator(1)).double()
    distance = torch.cdist(draws, centres)  # the midpoint (the origin) is 4.7 away from each centre
    assert float((distance.min(1).values < 1.0).float().mean()) > 0.9
    assert 0.2 < float((distance.argmin(1) == 0).float().mean()) < 0.8  # both clusters drawn
    gaussian = torch.cdist(PCAGaussian().fit(data).sample(64, make_generator(1)).double(), centres)
    assert float((gaussian.min(1).values < 1.0).float().mean()) < 0.5
    assert math.isfinite(model.losses[-1])


@pytest.mark.parametrize("model_class", [PCAGaussian, LatentDiffusion])
def test_generators_reject_bad_input(model_class):
    model = model_class()
    with pytest.raises(ConfigError, match="not fitted"):
        model.sample(3, make_generator(0))
    with pytest.raises(DataError, match="at least 3 samples"):
        model.fit(torch.zeros(2, 5))
    bad = torch.randn(10, 5)
    bad[3, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        model.fit(bad)
    with pytest.raises(ShapeError, match=r"samples \[n, D\]"):
        model.fit(torch.zeros(10, 5, 2))
    with pytest.raises(DataError, match="all equal"):
        model.fit(torch.ones(10, 5))


def test_pca_space_rejects_wrong_width_and_options():
    space = PCASpace()
    space.fit(torch.randn(10, 5, generator=make_generator(0)))
    with pytest.raises(ShapeError, match=r"expected \[n, 5\]"):
        space.encode(torch.zeros(3, 4))
    with pytest.raises(ShapeError, match="latents"):
        space.decode(torch.zeros(3, space.dims + 1))
    with pytest.raises(ConfigError, match="keep_variance"):
        PCASpace(keep_variance=0.0)


# -- traffic hook --------------------------------------------------------------------------------------


def test_traffic_synthetic_sensors_mix_into_p1(shared_data):
    from metamap.bench.traffic import load_la
    from metamap.traffic.augmentation import scarce_family, synthetic_sensors
    from metamap.traffic.experiment import ExperimentConfig
    from metamap.traffic.protocols import new_sensors

    setup = new_sensors(load_la(), ExperimentConfig(model="node", steps=1))
    family, chosen = scarce_family(setup, 20, seed=0)
    assert len(chosen) == 20 and set(chosen) <= set(setup.family.nodes[0]["train"].tolist())
    start, stop = family.periods[0]
    series = family.sources[0].target[torch.as_tensor(chosen), start:stop].numpy()
    synthetic = synthetic_sensors(family, series[:5])
    one = synthetic.sample(4, make_generator(0))
    # synthetic sensors with a real sensor's series give that sensor's windows: same scaling, same calendar
    real = family.sources[0].windows(torch.as_tensor(chosen[:5]), torch.arange(100, 110))
    fake = synthetic.sources[0].windows(torch.arange(5), torch.arange(100, 110))
    assert torch.allclose(real[0], fake[0], atol=1e-4) and torch.allclose(real[1], fake[1], atol=1e-4)
    mixed = AugmentedFamily(family, synthetic, 0.5).sample(8, make_generator(0))
    assert int(mixed.meta["synthetic"].sum()) == 4 and mixed.x_support.shape[1:] == one.x_support.shape[1:]
    assert _episodes_equal(
        AugmentedFamily(family, synthetic).sample(8, make_generator(3)), family.sample(8, make_generator(3))
    )
