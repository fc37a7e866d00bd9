"""Settings of the geo benchmark: the split, ensemble size, scenarios, and the full and quick budgets."""

from __future__ import annotations

from dataclasses import dataclass

from metamap.geo import evaluation

TRAIN_DAYS = 24
K = 3
MEMBERS = 16
SCENARIOS = {name: evaluation.SCENARIOS[name] for name in ("sparse90", "blobs40")}
FORECAST_LEADS = (1, 3, 6)
LR = 5e-4


@dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one benchmark flavour (full or quick)."""

    fill_fields: int = 24  # test fields per gap-filling scenario
    slow_fields: int = 4  # of them, those also filled by the slow resampling methods
    kriging_tuning_fields: int = 8  # training fields used to choose the variogram model
    forecast_cases: int = 12
    generated: int = 64
    base: int = 16
    batch: int = 16
    fill_steps: int = 20  # DPM-Solver++ steps (conditional fill, forecast, generation)
    inpaint_steps: int = 25  # DDPM steps of the training-free inpainting ...
    inpaint_resample: int = 4  # ... each repeated this often (RePaint)
    repaint_steps: int = 50  # the peer's RePaintScheduler: steps, jump length, jumps
    repaint_jump: int = 10
    repaint_jump_n_sample: int = 4
    # training budget: (max optimizer steps, max wall seconds) per model
    fill_budget: tuple[int, int] = (5000, 11 * 60)
    generate_budget: tuple[int, int] = (5000, 7 * 60)
    peer_budget: tuple[int, int] = (5000, 7 * 60)
    forecast_budget: tuple[int, int] = (5000, 7 * 60)
    deterministic_budget: tuple[int, int] = (5000, 4 * 60)
    grid_budget: tuple[int, int] = (5000, 3 * 60)  # the residual fill model of each grid (bench.geo.grids)
    grid_fields: int = 8  # test fields per scenario and grid


FULL = Settings()
QUICK = Settings(
    fill_fields=2,
    slow_fields=1,
    kriging_tuning_fields=1,
    forecast_cases=1,
    generated=16,
    base=8,
    batch=2,
    fill_steps=2,
    inpaint_steps=2,
    inpaint_resample=1,
    repaint_steps=4,
    repaint_jump=2,
    repaint_jump_n_sample=1,
    fill_budget=(3, 30),
    generate_budget=(3, 30),
    peer_budget=(3, 30),
    forecast_budget=(3, 30),
    deterministic_budget=(3, 30),
    grid_budget=(3, 30),
    grid_fields=2,
)
