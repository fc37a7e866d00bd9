"""Benchmark ``samplers``: accuracy of the diffusion samplers with the exact Gaussian denoiser.

Protocol. Data N(mu = 1.5, sigma^2) per pixel, sigma = 0.5 or 1. For Gaussian
data the optimal denoiser is closed-form
(:class:`metamap.diffusion.reference.GaussianDenoiser`), so a "network" that
returns it isolates each sampler's own error. Samples of 4,000 fields
``[1, 2, 2]`` (16,000 pixels) per run, 3 seeds, 1,000-step linear (1e-4 to
0.02) and cosine (s = 0.008) schedules, v-prediction; samplers DPM-Solver++(2M),
DDIM (eta 0) and DDPM (ancestral) at 10, 15, 25 and 50 steps. Per run: the
mean error (sample mean - mu) and the relative error of the sample standard
deviation (std / sigma - 1); rows hold their mean and sd over the seeds.

Training-free inpainting: cosine schedule, one pixel of four known (pixel
(0, 0) of every field, set to -4); pixels are independent, so the free ones
must keep the data law. Measured on the free pixels as above, for DPM-Solver++
20 steps x 1 and x 2 resamplings, DDPM 25 x 4, DDIM 25 x 4, DDPM 100 x 1.

Headline: for each named sampler and step count, the seed-mean relative std
error of largest magnitude over schedules and sigmas (signed); the inpainting
figure likewise over the two sigmas. ``--quick``: 1 seed, 10 and 25 steps,
1,000 samples.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from metamap.diffusion.reference import GaussianDenoiser
from metamap.diffusion.samplers import sample
from metamap.diffusion.schedules import NoiseSchedule
from metamap.plotting import pyplot, save_png
from metamap.report import format_table, machine, write_json

MU = 1.5
SIGMAS = (0.5, 1.0)
SCHEDULES = ("linear", "cosine")
SCHEDULE_STEPS = 1000
SAMPLERS = ("dpmpp", "ddim", "ddpm")
STEPS = (10, 15, 25, 50)
QUICK_STEPS = (10, 25)
SEEDS = 3
SAMPLES = 4000
QUICK_SAMPLES = 1000
FIELD = (1, 2, 2)
PREDICTION = "v"
INPAINT_SCHEDULE = "cosine"
INPAINT_VALUE = -4.0
# (sampler, steps, resample)
INPAINT_RUNS = (("dpmpp", 20, 1), ("dpmpp", 20, 2), ("ddpm", 25, 4), ("ddim", 25, 4), ("ddpm", 100, 1))


def _schedule(kind: str) -> NoiseSchedule:
    return getattr(NoiseSchedule, kind)(SCHEDULE_STEPS)


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def measure(
    schedule: NoiseSchedule,
    sigma: float,
    sampler: str,
    steps: int,
    *,
    seeds: int,
    samples: int,
    resample: int = 1,
    inpaint: bool = False,
) -> dict[str, Any]:
    """Sample ``[samples, *FIELD]`` with the exact denoiser once per seed and score the spread and mean.

    With ``inpaint`` pixel (0, 0) of every field is known (``INPAINT_VALUE``) and only the other
    pixels are scored. Returns the row: settings, ``nfe`` (network evaluations per draw), and
    ``mean_error`` / ``std_rel_error`` with their sd over seeds (``*_sd``, NaN for one seed).
    """
    shape = (samples, *FIELD)
    options: dict[str, Any] = {"resample": resample}
    free = torch.ones(shape, dtype=torch.bool)
    if inpaint:
        free[:, :, 0, 0] = False
        options.update(known=torch.full(shape, INPAINT_VALUE), known_mask=~free)
    mean_errors, std_errors = [], []
    for seed in range(seeds):
        model = GaussianDenoiser(schedule, MU, sigma, PREDICTION)
        x = sample(
            model,
            schedule,
            shape,
            sampler=sampler,
            steps=steps,
            prediction=PREDICTION,
            generator=torch.Generator().manual_seed(seed),
            **options,
        )[free]
        mean_errors.append(x.mean().item() - MU)
        std_errors.append(x.std().item() / sigma - 1)
    return {
        "schedule": schedule.config["kind"],
        "sigma": sigma,
        "sampler": sampler,
        "steps": steps,
        "resample": resample,
        "nfe": model.calls,
        "seeds": seeds,
        "samples": samples,
        "mean_error": statistics.mean(mean_errors),
        "mean_error_sd": _sd(mean_errors),
        "std_rel_error": statistics.mean(std_errors),
        "std_rel_error_sd": _sd(std_errors),
    }


def _largest(rows: list[dict[str, Any]], **match: Any) -> float:
    """The ``std_rel_error`` of largest magnitude among the rows matching ``match`` (signed)."""
    values = [r["std_rel_error"] for r in rows if all(r[k] == v for k, v in match.items())]
    return max(values, key=abs)


def _percent(row: dict[str, Any]) -> str:
    sd = row["std_rel_error_sd"]
    return f"{100 * row['std_rel_error']:+.1f}%" + ("" if math.isnan(sd) else f" ± {100 * sd:.1f}")


def plot(rows: list[dict[str, Any]], steps: tuple[int, ...], path: Path) -> None:
    """Relative std error (%) against steps, one line per sampler and sigma, one panel per schedule."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(SCHEDULES), figsize=(5.5 * len(SCHEDULES), 4), sharey=True)
    for ax, kind in zip(axes, SCHEDULES):
        for sampler, color in zip(SAMPLERS, ("tab:blue", "tab:orange", "tab:green")):
            for sigma, style in zip(SIGMAS, ("-", "--")):
                line = [r for r in rows if (r["schedule"], r["sampler"], r["sigma"]) == (kind, sampler, sigma)]
                sd = [100 * r["std_rel_error_sd"] for r in line]
                ax.errorbar(
                    steps,
                    [100 * r["std_rel_error"] for r in line],
                    yerr=None if math.isnan(sd[0]) else sd,
                    color=color,
                    ls=style,
                    marker="o",
                    capsize=3,
                    label=f"{sampler}, sigma {sigma}",
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        ax.set_title(f"{kind} schedule ({SCHEDULE_STEPS} steps)")
        ax.set_xlabel("sampling steps (network evaluations)")
    axes[0].set_ylabel("relative error of the sample std (%)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def run(quick: bool, json_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    steps = QUICK_STEPS if quick else STEPS
    seeds, samples = (1, QUICK_SAMPLES) if quick else (SEEDS, SAMPLES)
    rows = [
        measure(_schedule(kind), sigma, sampler, n, seeds=seeds, samples=samples)
        for kind in SCHEDULES
        for sigma in SIGMAS
        for sampler in SAMPLERS
        for n in steps
    ]
    inpaint_rows = [
        measure(
            _schedule(INPAINT_SCHEDULE),
            sigma,
            sampler,
            n,
            seeds=seeds,
            samples=samples,
            resample=resample,
            inpaint=True,
        )
        for sampler, n, resample in INPAINT_RUNS
        for sigma in SIGMAS
    ]
    headline = {
        "dpmpp_std_rel_error_10steps": _largest(rows, sampler="dpmpp", steps=10),
        "dpmpp_std_rel_error_25steps": _largest(rows, sampler="dpmpp", steps=25),
        "ddim_std_rel_error_25steps": _largest(rows, sampler="ddim", steps=25),
        "ddpm_std_rel_error_25steps": _largest(rows, sampler="ddpm", steps=25),
        "inpaint_dpmpp_20x1_std_rel_error": _largest(inpaint_rows, sampler="dpmpp", steps=20, resample=1),
    }
    result = {
        "benchmark": "samplers",
        "quick": quick,
        "headline": headline,
        "settings": {
            "mu": MU,
            "sigmas": list(SIGMAS),
            "schedules": {k: _schedule(k).config for k in SCHEDULES},
            "samplers": list(SAMPLERS),
            "steps": list(steps),
            "seeds": seeds,
            "samples": samples,
            "field": list(FIELD),
            "prediction": PREDICTION,
            "inpaint_schedule": INPAINT_SCHEDULE,
            "inpaint_value": INPAINT_VALUE,
            "inpaint_known": "pixel (0, 0) of every 2 x 2 field",
        },
        "rows": rows,
        "inpaint_rows": inpaint_rows,
        "max_abs_mean_error": max(abs(r["mean_error"]) for r in rows + inpaint_rows),
        "wall_seconds": time.perf_counter() - started,
        "machine": machine(),
        "notes": __doc__,
    }
    write_json(json_path, result)
    table = [
        [
            kind,
            sigma,
            sampler,
            *(_percent(r) for r in rows if (r["schedule"], r["sigma"], r["sampler"]) == (kind, sigma, sampler)),
        ]
        for kind in SCHEDULES
        for sigma in SIGMAS
        for sampler in SAMPLERS
    ]
    print(format_table(["schedule", "sigma", "sampler", *(f"{n} steps" for n in steps)], table))
    print(
        f"std relative error (mean ± sd over {seeds} seed(s)); largest |mean error| {result['max_abs_mean_error']:.4f}"
    )
    print(
        format_table(
            ["inpainting", "sigma", "nfe", "std rel. error", "mean error"],
            [
                [
                    f"{r['sampler']} {r['steps']} x {r['resample']}",
                    r["sigma"],
                    r["nfe"],
                    _percent(r),
                    f"{r['mean_error']:+.4f}",
                ]
                for r in inpaint_rows
            ],
        )
    )
    print(format_table(["key", "value"], [[k, v] for k, v in headline.items()]))
    plot(rows, steps, json_path.with_suffix(".png"))
    print(f"wrote {json_path} and {json_path.with_suffix('.png').name} beside it")
    return result
