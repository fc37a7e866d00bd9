"""Generative models of a task's underlying function, fitted on the meta-training tasks.

A task's function is one vector (a physical system's dense noise-free
trajectory ``[G, n_out]`` flattened; a sensor's scaled series). Every
generator has the same two verbs:

- ``fit(samples [n, D]) -> self``
- ``sample(n, generator) -> [n, D]`` (float32; randomness only from ``generator``)

Both generators work in the same latent space, :class:`PCASpace`: the
samples are centred by their mean and projected on their top ``d`` principal
axes (``d`` the smallest count keeping ``keep_variance`` of the variance,
capped at ``n - 1`` and ``max_dims``), each latent coordinate divided by its
standard deviation (whitened). PCA on the centred raw values, not on
per-feature standardized ones: a grid point every task shares (an initial
condition) has zero variance and must stay fixed rather than be blown up.

- :class:`PCAGaussian`: latent ``z ~ N(0, I)``, i.e. the Gaussian with the
  samples' mean and their covariance restricted to the top ``d`` axes.
- :class:`LatentDiffusion`: a small MLP denoiser trained on the whitened
  latents with :mod:`metamap.diffusion` (cosine schedule), sampled with
  DPM-Solver++; it can draw non-Gaussian latent distributions (clusters,
  curved manifolds) that the Gaussian cannot. It predicts the clean latent
  (``x0``), neither ``eps`` nor ``v``: at the cosine schedule's last step
  (``abar ~ 1e-9``) the clean latent implied by an eps prediction is the
  network's error divided by ``sqrt(abar)``, and DPM-Solver++ (data-prediction
  form) drew latents of size ~1e3 where the data have size 1; and on
  whitened latents ``v`` is uncorrelated with ``x_t`` at every step, so the
  network must learn the non-Gaussian part from scratch: in 3000 steps on two
  clusters its loss stayed at that of predicting 0 (1.0, against 0.65 for the
  exact denoiser) and it drew the clusters' Gaussian fit. ``x0`` learned them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from metamap.diffusion import NoiseSchedule, sample
from metamap.errors import ConfigError, DataError, ShapeError, describe
from metamap.nn.unet import timestep_embedding
from metamap.seeding import seeded
from metamap.training.diffusion import train_diffusion

MIN_SAMPLES = 3


class Generator(Protocol):
    """A generative model of vectors ``[D]``: fitted once, then sampled."""

    def fit(self, samples: torch.Tensor) -> Generator: ...

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


def check_samples(samples: torch.Tensor | object, min_samples: int = MIN_SAMPLES) -> torch.Tensor:
    """``samples`` as float64 ``[n, D]``; ShapeError for another rank, DataError for NaN/inf or n < min_samples."""
    samples = torch.as_tensor(samples, dtype=torch.float64)
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ShapeError(f"generator.fit: expected samples [n, D] (one row per task), got {describe(samples)}")
    if samples.shape[0] < min_samples:
        raise DataError(f"generator.fit: expected at least {min_samples} samples, got {samples.shape[0]}")
    bad = int((~torch.isfinite(samples)).sum())
    if bad:
        raise DataError(f"generator.fit: samples {describe(samples)} hold {bad} NaN/inf value(s); expected finite")
    return samples


@dataclass
class PCASpace:
    """Centre, project on the top principal axes, whiten: ``[n, D] <-> [n, d]``.

    ``keep_variance`` in (0, 1]: the fraction of the total variance the kept
    axes must explain; ``max_dims`` caps ``d`` (None: only ``n - 1`` does).
    """

    keep_variance: float = 0.999
    max_dims: int | None = None
    mean: torch.Tensor = field(init=False, repr=False)  # [D]
    axes: torch.Tensor = field(init=False, repr=False)  # [d, D], orthonormal rows
    scales: torch.Tensor = field(init=False, repr=False)  # [d], latent standard deviations
    explained: float = field(init=False, default=float("nan"))  # fraction of variance kept

    def __post_init__(self) -> None:
        if not 0 < self.keep_variance <= 1 or (self.max_dims is not None and self.max_dims < 1):
            raise ConfigError(
                f"PCASpace: expected 0 < keep_variance <= 1 and max_dims >= 1 or None, "
                f"got {self.keep_variance}, {self.max_dims}"
            )

    @property
    def fitted(self) -> bool:
        return hasattr(self, "axes")

    @property
    def dims(self) -> int:
        """``d``, the latent dimension."""
        self._check_fitted()
        return int(self.axes.shape[0])

    def fit(self, samples: torch.Tensor) -> torch.Tensor:
        """Fit on ``samples [n, D]``; return their whitened latents ``[n, d]`` (float64)."""
        samples = check_samples(samples)
        n = samples.shape[0]
        self.mean = samples.mean(0)
        centred = samples - self.mean
        _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
        variance = singular**2 / (n - 1)
        total = float(variance.sum())
        if total <= 0:
            raise DataError(f"PCASpace.fit: the {n} samples are all equal; nothing to model")
        cumulative = torch.cumsum(variance, 0) / total
        d = int((cumulative < self.keep_variance - 1e-12).sum()) + 1
        d = min(d, n - 1, self.max_dims or n, int((variance > total * 1e-12).sum()))
        self.axes, self.scales = vt[:d], variance[:d].sqrt()
        self.explained = float(cumulative[d - 1])
        return self.encode(samples)

    def encode(self, samples: torch.Tensor) -> torch.Tensor:
        """Whitened latents ``[n, d]`` of ``samples [n, D]``."""
        self._check_fitted()
        samples = torch.as_tensor(samples, dtype=torch.float64)
        if samples.ndim != 2 or samples.shape[1] != self.mean.shape[0]:
            raise ShapeError(f"PCASpace.encode: expected [n, {self.mean.shape[0]}], got {describe(samples)}")
        return (samples - self.mean) @ self.axes.T / self.scales

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Vectors ``[n, D]`` (float32) of whitened latents ``[n, d]``."""
        self._check_fitted()
        latents = torch.as_tensor(latents, dtype=torch.float64)
        if latents.ndim != 2 or latents.shape[1] != self.dims:
            raise ShapeError(f"PCASpace.decode: expected latents [n, {self.dims}], got {describe(latents)}")
        return (self.mean + (latents * self.scales) @ self.axes).float()

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError("the generator is not fitted: call fit(samples [n, D]) first")


def _check_count(n: int) -> None:
    if n < 1:
        raise ConfigError(f"sample: expected n >= 1 samples to draw, got {n}")


class PCAGaussian:
    """A Gaussian in the PCA space: mean of the samples, their covariance on the top ``d`` axes."""

    def __init__(self, keep_variance: float = 0.999, max_dims: int | None = None) -> None:
        self.space = PCASpace(keep_variance, max_dims)

    def fit(self, samples: torch.Tensor) -> PCAGaussian:
        """Fit on ``samples [n, D]`` (n >= 3, finite)."""
        self.space.fit(samples)
        return self

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, D]`` float32 draws."""
        _check_count(n)
        return self.space.decode(torch.randn(n, self.space.dims, generator=generator, dtype=torch.float64))


class LatentDenoiser(nn.Module):
    """Denoising MLP on latent vectors fed as fields ``[B, d, 1, 1]``: ``(x_t, t, cond) -> [B, d, 1, 1]``.

    Input: ``x_t`` concatenated with a sinusoidal embedding of ``t`` (``emb_dim``);
    ``depth`` hidden layers of ``width`` units with SiLU; ``cond`` is ignored
    (the model is unconditional).
    """

    def __init__(self, dims: int, width: int = 128, depth: int = 3, emb_dim: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = dims + emb_dim
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.SiLU()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, dims))
        self.emb_dim = emb_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        flat = x.flatten(1)
        out = self.net(torch.cat([flat, timestep_embedding(t, self.emb_dim)], dim=1))
        return out.view_as(x)


class LatentDiffusion:
    """A diffusion model of the whitened PCA latents (unconditional).

    ``train_steps`` Adam steps (lr ``lr``, minibatches of ``batch`` latents drawn
    with replacement) of the ``prediction`` objective (``x0``; see the module notes) on a cosine schedule of
    ``n_steps`` steps; sampling with DPM-Solver++ in ``sample_steps`` steps
    from the EMA network (decay ``ema``; a short run wants a smaller one). ``seed`` fixes the network's initialisation and the
    training draws.
    """

    def __init__(
        self,
        keep_variance: float = 0.999,
        max_dims: int | None = None,
        *,
        train_steps: int = 3000,
        batch: int = 64,
        lr: float = 1e-3,
        width: int = 128,
        depth: int = 3,
        n_steps: int = 1000,
        sample_steps: int = 20,
        prediction: str = "x0",
        ema: float = 0.999,
        seed: int = 0,
    ) -> None:
        if train_steps < 1 or batch < 1 or sample_steps < 1:
            raise ConfigError(
                f"LatentDiffusion: expected train_steps, batch, sample_steps >= 1, "
                f"got {train_steps}, {batch}, {sample_steps}"
            )
        self.space = PCASpace(keep_variance, max_dims)
        self.schedule = NoiseSchedule.cosine(n_steps)
        self.train_steps, self.batch, self.lr, self.seed = train_steps, batch, lr, seed
        self.width, self.depth, self.sample_steps, self.prediction = width, depth, sample_steps, prediction
        self.ema = ema
        self.model: nn.Module | None = None
        self.losses: list[float] = []

    def fit(self, samples: torch.Tensor) -> LatentDiffusion:
        """Fit on ``samples [n, D]`` (n >= 3, finite): PCA, then the denoiser on the latents."""
        latents = self.space.fit(samples).float()
        with seeded(self.seed):
            network = LatentDenoiser(latents.shape[1], self.width, self.depth)
        draws = torch.Generator().manual_seed(self.seed + 1)

        def batch() -> dict[str, torch.Tensor]:
            index = torch.randint(latents.shape[0], (self.batch,), generator=draws)
            return {"x0": latents[index, :, None, None]}

        trained = train_diffusion(
            network,
            self.schedule,
            batch,
            steps=self.train_steps,
            lr=self.lr,
            prediction=self.prediction,
            ema=self.ema,
            seed=self.seed,
            progress=False,
        )
        self.model, self.losses = trained.model, trained.losses
        return self

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, D]`` float32 draws (DPM-Solver++, ``sample_steps`` network calls)."""
        _check_count(n)
        if self.model is None:
            raise ConfigError("LatentDiffusion is not fitted: call fit(samples [n, D]) first")
        latents = sample(
            self.model,
            self.schedule,
            (n, self.space.dims, 1, 1),
            sampler="dpmpp",
            steps=self.sample_steps,
            prediction=self.prediction,
            generator=generator,
        )
        return self.space.decode(latents.flatten(1))


GENERATORS = {"diffusion": LatentDiffusion, "gaussian": PCAGaussian}


def make_generator_model(name: str, **options) -> Generator:
    """A fresh generator by name (``diffusion`` or ``gaussian``), built with ``options``."""
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}; expected one of {', '.join(GENERATORS)}")
    return GENERATORS[name](**options)


def fit_and_draw(
    name: str, samples: np.ndarray, n: int, seed: int, options: dict | None = None
) -> tuple[np.ndarray, dict]:
    """Fit generator ``name`` on ``samples [n_real, *shape]`` (each flattened); draw ``[n, *shape]``.

    The diffusion model is initialised and trained from ``seed``; the draws come from seed ``seed + 10``.
    Also returns ``{"latent_dims", "variance_kept", "seconds"}`` (fit and draw, wall clock).
    """
    started = time.perf_counter()
    options = dict(options or {})
    if name == "diffusion":
        options.setdefault("seed", seed)
    samples = np.asarray(samples)
    model = make_generator_model(name, **options).fit(torch.as_tensor(samples.reshape(len(samples), -1)))
    drawn = model.sample(n, torch.Generator().manual_seed(seed + 10)).numpy().reshape(n, *samples.shape[1:])
    return drawn, {
        "latent_dims": model.space.dims,
        "variance_kept": model.space.explained,
        "seconds": time.perf_counter() - started,
    }
