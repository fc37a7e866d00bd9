"""Bounded-memory training on a grid larger than memory: a generated 2000 x 2000 x 100 zarr store.

    python -m metamap.geo.stream_demo make  --store /tmp/big.zarr      # 1.6 GB of float32, written chunk by chunk
    python -m metamap.geo.stream_demo train --store /tmp/big.zarr --steps 20
    rm -rf /tmp/big.zarr

``make`` writes a smooth-plus-noise field with dask (chunks of one time step
x 500 x 500), never holding more than a chunk. ``train`` runs ``metamap geo
train``'s recipe (a conditional gap-filling model on random 64 x 64 patches,
read lazily from the dask-backed store) and prints the process's peak
resident memory (``resource.getrusage``) beside the store's size.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from metamap.arguments import add_steps_flag
from metamap.errors import DataError


def make_store(store: Path, size: int = 2000, n_times: int = 100, chunk: int = 500, seed: int = 0) -> int:
    """Write ``[n_times, size, size]`` float32 variable ``t2m`` to the zarr ``store``; returns its bytes."""
    import dask
    import dask.array as da
    import pandas as pd
    import xarray as xr

    needed = n_times * size * size * 4
    free = shutil.disk_usage(store.parent if store.parent.exists() else Path("/")).free
    if free < 2 * needed:
        raise DataError(f"{store.parent}: {free / 1e9:.1f} GB free, need about {2 * needed / 1e9:.1f} GB")
    noise = da.random.RandomState(seed).standard_normal((n_times, size, size), chunks=(1, chunk, chunk))
    rows = da.arange(size, chunks=chunk, dtype=np.float32)
    smooth = 5 * da.sin(rows[:, None] / 150) * da.cos(rows[None, :] / 200)
    values = (280 + smooth[None] + noise).astype(np.float32)
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), values, {"units": "K", "long_name": "synthetic temperature"})},
        coords={
            "time": pd.date_range("2019-03-01", periods=n_times, freq="h"),
            "lat": np.linspace(60, 40, size),
            "lon": np.linspace(-20, 20, size),
        },
    )
    with dask.config.set(scheduler="synchronous"):
        ds.to_zarr(store, mode="w")
    return needed


def train_on_store(store: Path, steps: int, patch: int = 64, batch: int = 8) -> dict[str, float]:
    """Train a few steps on lazily drawn patches; returns the wall time and peak RSS in MB."""
    import dask
    import torch

    from metamap.geo.io import DEFAULT_CHUNKS, open_field
    from metamap.geo.train import train_task

    torch.set_num_threads(1)
    start = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        field = open_field(store, "t2m", chunks=DEFAULT_CHUNKS)
        model = train_task(
            field,
            "fill",
            np.arange(field.shape[0]),
            steps=steps,
            run_dir=None,
            batch=batch,
            patch=patch,
            base=16,
            max_scan=4,
            progress=False,
        )
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "steps": model.trained.step,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_kb / 1024,
        "grid": list(field.shape),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metamap.geo.stream_demo", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("make", "train"))
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--times", type=int, default=100)
    add_steps_flag(parser, "diffusion training", default=20)
    args = parser.parse_args(argv)
    if args.action == "make":
        start = time.perf_counter()
        nbytes = make_store(args.store, args.size, args.times)
        print(
            f"wrote {args.store}: {nbytes / 1e9:.2f} GB of float32 in {time.perf_counter() - start:.0f} s; "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
    else:
        result = train_on_store(args.store, args.steps)
        print(
            f"trained {result['steps']} steps on {result['grid']} in {result['seconds']:.0f} s; "
            f"peak RSS {result['peak_rss_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
