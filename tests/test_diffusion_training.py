"""Objective, variational bound, training, checkpoints and the diffusers RePaint peer."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from torch import nn

from metamap.diffusion.objective import diffusion_loss, variational_bound
from metamap.diffusion.schedules import NoiseSchedule
from metamap.errors import CheckpointError, ConfigError, DataError, ShapeError, TrainingInterrupted
from metamap.nn.unet import UNet2d
from metamap.training.diffusion import TrainedDiffusion, train_diffusion


class FiniteGuard(nn.Module):
    """A network that fails if it ever sees NaN/inf, and otherwise behaves like a fixed small UNet."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = UNet2d(channels, base=8, mults=(1, 2))
        nn.init.normal_(self.net.out.weight, std=0.1)

    def forward(self, x, t, cond=None):
        assert torch.isfinite(x).all() and torch.isfinite(t).all()
        return self.net(x, t, cond)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_nan_pixels_never_reach_the_loss(prediction):
    schedule = NoiseSchedule.cosine(100)
    x0 = torch.randn(3, 1, 6, 7)
    valid = torch.rand(3, 1, 6, 7) > 0.3
    with_nan = x0.masked_fill(~valid, float("nan"))
    other = x0.masked_fill(~valid, 123.0)
    model = FiniteGuard()
    loss = lambda x: diffusion_loss(  # noqa: E731
        model, schedule, x, valid=valid, prediction=prediction, generator=torch.Generator().manual_seed(4)
    )
    a, b = loss(with_nan), loss(other)
    assert torch.isfinite(a)
    assert a.item() == b.item()
    a.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_loss_averages_over_valid_pixels_only():
    """A zero network under eps-prediction has loss = mean of noise^2 over the valid pixels."""
    schedule = NoiseSchedule.linear(50)
    x0 = torch.randn(2, 2, 4, 5)
    valid = torch.rand(2, 2, 4, 5) > 0.5

    class Zero(nn.Module):
        def forward(self, x, t, cond=None):
            return torch.zeros_like(x)

    loss = diffusion_loss(Zero(), schedule, x0, valid=valid, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    torch.randint(0, 50, (2,), generator=gen)
    noise = torch.randn(2, 2, 4, 5, generator=gen)
    assert loss.item() == pytest.approx(noise[valid].square().mean().item(), rel=1e-6)


def test_bad_input_to_the_loss_is_named():
    schedule, model = NoiseSchedule.cosine(20), FiniteGuard()
    with pytest.raises(DataError, match="valid=False"):
        diffusion_loss(model, schedule, torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(DataError, match="cond"):
        diffusion_loss(model, schedule, torch.zeros(1, 1, 4, 4), cond=torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ConfigError, match="prediction"):
        diffusion_loss(model, schedule, torch.zeros(1, 1, 4, 4), prediction="score")


def _toy_batches(seed: int = 0):
    """Smooth toy fields [16, 1, 8, 8]: a random level N(1, 0.5^2) plus a random horizontal gradient."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-1, 1, 8).reshape(1, 1, 1, 8)

    def make() -> dict[str, torch.Tensor]:
        level = 1 + 0.5 * torch.randn(16, 1, 1, 1, generator=gen)
        slope = 0.5 * torch.randn(16, 1, 1, 1, generator=gen)
        return {"x0": (level + slope * ramp).expand(16, 1, 8, 8).contiguous()}

    return make


def _fresh_model(seed: int = 0) -> UNet2d:
    torch.manual_seed(seed)
    return UNet2d(1, base=8, mults=(1, 2))


@pytest.fixture(scope="module")
def trained() -> TrainedDiffusion:
    """v-prediction: with the cosine schedule abar at the last step is 2e-9, and an eps-network's error
    would be amplified 2e4 times in its clean-field prediction there."""
    return train_diffusion(
        _fresh_model(),
        NoiseSchedule.cosine(100),
        _toy_batches(),
        steps=250,
        lr=2e-3,
        ema=0.99,
        prediction="v",
        progress=False,
    )


@pytest.mark.slow
def test_training_reduces_the_loss(trained):
    held_out = _toy_batches(seed=9)()["x0"]
    schedule = trained.schedule

    @torch.no_grad()
    def mean_loss(model):
        gens = [torch.Generator().manual_seed(s) for s in range(8)]
        return sum(diffusion_loss(model, schedule, held_out, prediction="v", generator=g).item() for g in gens) / 8

    before, after = mean_loss(_fresh_model()), mean_loss(trained.model)
    assert after < 0.5 * before
    assert len(trained.losses) == 250 and trained.step == 250


def test_variational_bound_is_finite_and_lower_after_training(trained):
    held_out = _toy_batches(seed=9)()["x0"][:4]
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    untrained = variational_bound(_fresh_model(), trained.schedule, held_out, prediction="v", generator=gen())
    after = trained.variational_bound(held_out, generator=gen())
    assert after.shape == (4,) and torch.isfinite(after).all() and torch.isfinite(untrained).all()
    assert bool((after < untrained).all())
    sparse = torch.stack(
        [trained.variational_bound(held_out, n_terms=20, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    )
    assert torch.isfinite(sparse).all()
    assert sparse.mean().item() == pytest.approx(after.mean().item(), abs=0.5)


def test_trained_samples_resemble_the_toy_data(trained):
    x = trained.sample((256, 1, 8, 8), steps=20, generator=torch.Generator().manual_seed(0))
    level = x.mean(dim=(1, 2, 3))
    assert level.mean().item() == pytest.approx(1.0, abs=0.15)
    assert 0.1 < level.std().item() < 0.7  # data: 0.5; 250 steps learn the mean first and the spread slowly


def test_save_load_round_trip_gives_identical_samples(trained, tmp_path):
    trained.save(tmp_path / "model")
    again = TrainedDiffusion.load(tmp_path / "model")
    assert again.prediction == trained.prediction and again.step == trained.step
    draw = lambda m: m.sample((3, 1, 8, 8), steps=10, generator=torch.Generator().manual_seed(7))  # noqa: E731
    assert torch.equal(draw(trained), draw(again))


def test_resume_continues_exactly(tmp_path):
    schedule = NoiseSchedule.cosine(50)
    make = _toy_batches()
    data = [make() for _ in range(5)]  # cycled; 10 steps = two passes, so the resumed run sees the same order
    options = dict(lr=1e-3, seed=3, progress=False, checkpoint_every=5)
    whole = train_diffusion(_fresh_model(), schedule, data, steps=20, **options)
    train_diffusion(_fresh_model(), schedule, data, steps=10, run_dir=tmp_path, **options)
    resumed = train_diffusion(_fresh_model(seed=1), schedule, data, steps=20, run_dir=tmp_path, **options)
    assert resumed.step == 20 and len(resumed.losses) == 20
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_an_interrupt_saves_and_the_rerun_resumes_exactly_with_its_metrics_log(tmp_path):
    schedule = NoiseSchedule.cosine(50)
    make = _toy_batches()
    data = [make() for _ in range(5)]
    options = dict(lr=1e-3, seed=3, progress=False, log_every=2)
    whole = train_diffusion(_fresh_model(), schedule, data, steps=10, **options)
    calls = []

    def interrupted_data() -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) == 5:  # Ctrl-C during the fifth step: it finishes, then training stops
            os.kill(os.getpid(), signal.SIGINT)
        return data[len(calls) - 1]

    with pytest.raises(TrainingInterrupted, match="at step 5"):
        train_diffusion(_fresh_model(), schedule, interrupted_data, steps=10, run_dir=tmp_path, **options)
    resumed = train_diffusion(_fresh_model(seed=1), schedule, data, steps=10, run_dir=tmp_path, **options)
    assert resumed.losses == whole.losses
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [2, 4, 6, 8, 10]
    assert logged[2]["train_loss"] == pytest.approx(sum(whole.losses[4:6]) / 2)


def test_training_errors_are_named(tmp_path):
    schedule = NoiseSchedule.cosine(20)
    with pytest.raises(DataError, match="'x0'"):
        train_diffusion(_fresh_model(), schedule, [{"x": torch.zeros(1, 1, 4, 4)}], steps=1, progress=False)
    with pytest.raises(DataError, match="ran out"):
        train_diffusion(_fresh_model(), schedule, iter([_toy_batches()()]), steps=2, progress=False)
    with pytest.raises(ConfigError, match="steps"):
        train_diffusion(_fresh_model(), schedule, _toy_batches(), steps=0, progress=False)
    with pytest.raises(CheckpointError, match="diffusion.json"):
        TrainedDiffusion.load(tmp_path)
    train_diffusion(_fresh_model(), schedule, _toy_batches(), steps=1, run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="another configuration"):
        train_diffusion(_fresh_model(), schedule, _toy_batches(), steps=2, lr=0.5, run_dir=tmp_path, progress=False)


@pytest.mark.parametrize("base", [16, 32])
def test_repaint_peer_matches_the_parameter_count_and_keeps_known_pixels(base):
    pytest.importorskip("diffusers")
    from metamap.bench.repaint_peer import train_repaint_peer

    reference = UNet2d(1, base=base).n_parameters()
    schedule = NoiseSchedule.cosine(100)
    make = _toy_batches()

    def batches():
        x0 = make()["x0"][:4]
        return {"x0": torch.nn.functional.interpolate(x0, size=(11, 13))}

    peer = train_repaint_peer(
        batches, channels=1, reference_parameters=reference, schedule=schedule, steps=3, progress=False
    )
    assert abs(peer.n_parameters - reference) <= 0.2 * reference
    gen = torch.Generator().manual_seed(0)
    known = torch.randn(2, 1, 11, 13, generator=gen)
    mask = torch.rand(2, 1, 11, 13, generator=gen) > 0.5
    out = peer.inpaint(
        known.masked_fill(~mask, float("nan")), mask, steps=10, jump_length=2, jump_n_sample=2, generator=gen
    )
    assert out.shape == known.shape and torch.isfinite(out).all()
    assert torch.equal(out[mask], known[mask])


def test_a_conditional_peer_reads_its_conditioning_channels():
    """The peer with conditioning channels: trained on batches with "cond", its samples depend on cond, and a
    cond with the wrong channel count is refused."""
    pytest.importorskip("diffusers")
    from metamap.bench.repaint_peer import train_repaint_peer

    gen = torch.Generator().manual_seed(0)

    def batches():
        cond = torch.randn(4, 3, 12, 12, generator=gen)
        return {"x0": cond[:, :1] + 0.1 * torch.randn(4, 1, 12, 12, generator=gen), "cond": cond}

    reference = UNet2d(1, cond_channels=3, base=16).n_parameters()
    peer = train_repaint_peer(
        batches,
        channels=1,
        reference_parameters=reference,
        cond_channels=3,
        schedule=NoiseSchedule.cosine(100),
        steps=3,
        progress=False,
    )
    assert abs(peer.n_parameters - reference) <= 0.2 * reference
    known, mask = torch.zeros(2, 1, 12, 12), torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    mask[:, :, ::3, ::3] = True
    options = dict(steps=6, jump_length=2, jump_n_sample=2)
    cond = torch.randn(2, 3, 12, 12, generator=gen)
    first = peer.inpaint(known, mask, cond, generator=torch.Generator().manual_seed(1), **options)
    other = peer.inpaint(known, mask, -cond, generator=torch.Generator().manual_seed(1), **options)
    assert torch.equal(first[mask], known[mask]) and not torch.allclose(first, other)
    with pytest.raises(ShapeError, match="3 conditioning channels"):
        peer.inpaint(known, mask, cond[:, :2], **options)
    with pytest.raises(ShapeError, match="3 conditioning channels"):
        peer.inpaint(known, mask, **options)


def test_repaint_loop_with_the_exact_gaussian_denoiser():
    """The peer's RePaint loop on independent N(mu, sigma^2) pixels: unknown pixels keep the data law."""
    pytest.importorskip("diffusers")
    from metamap.bench.repaint_peer import RepaintPeer
    from metamap.diffusion.reference import GaussianDenoiser

    schedule = NoiseSchedule.cosine(1000)

    class Exact(GaussianDenoiser):
        def forward_padded(self, x, timestep):
            return self(x, timestep / schedule.n_steps)

        def pad(self, x):
            return x

        def inputs(self, x, cond):
            return x

    mu, sigma = 1.5, 0.5
    exact = Exact(schedule, mu, sigma, "v")
    peer = RepaintPeer(network=exact, trained=TrainedDiffusion(exact, schedule, "v"))
    known = torch.full((500, 1, 2, 2), -4.0)
    mask = torch.zeros(500, 1, 2, 2, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    gen = torch.Generator().manual_seed(0)
    out = peer.inpaint(known, mask, steps=50, jump_length=5, jump_n_sample=2, generator=gen)
    free = out[~mask]
    assert torch.all(out[mask] == -4.0)
    assert free.mean().item() == pytest.approx(mu, abs=0.05)
    assert free.std().item() == pytest.approx(sigma, rel=0.1)


def test_a_field_without_valid_pixels_adds_nothing_to_the_loss():
    schedule, model = NoiseSchedule.cosine(20), FiniteGuard()
    x0 = torch.randn(2, 1, 4, 4)
    valid = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    valid[1] = False
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    loss = diffusion_loss(model, schedule, x0.masked_fill(~valid, float("nan")), valid=valid, generator=gen())
    other = diffusion_loss(model, schedule, x0.masked_fill(~valid, 99.0), valid=valid, generator=gen())
    assert torch.isfinite(loss) and loss.item() == other.item()
    with pytest.raises(DataError, match="every field"):
        variational_bound(model, schedule, x0, valid=valid)
    with pytest.raises(DataError, match="at least one valid pixel"):
        diffusion_loss(model, schedule, x0, valid=torch.zeros_like(valid))
