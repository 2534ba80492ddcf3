"""What every benchmark works on: synthetic churn batches as Parquet files, projects under temporary folders,
and the timing helpers.

Batches are written as Parquet (not CSV) for both the platform and the bare baseline: at 1M rows CSV parsing
alone would dominate both sides and hide what the benchmark is about.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import re
import shutil
import socket
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from retrain_assets.app.demo import declare_business_limits
from retrain_assets.core import synthetic
from retrain_assets.core.config import RetrainConfig, load_config
from retrain_assets.core.inference import infer_config, render_config

START = dt.date(2024, 1, 1)  # far enough back that no batch of the 5M-row table lies in the future
SEED = 7


@dataclass
class Measurement:
    """Samples (seconds) of one side of one benchmark; the first ``warmup`` runs are dropped by the caller."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def spread(self) -> str:
        return f"{min(self.samples):.2f}-{max(self.samples):.2f}"


@dataclass
class Row:
    """One line of the results table. ``platform``/``baseline`` are display strings (seconds or MB)."""

    benchmark: str
    platform: str
    baseline: str
    ratio: Optional[float]
    goal: str
    met: Optional[bool]
    notes: str = ""


def timed(work: Callable[[], object]) -> tuple[float, object]:
    """Wall time of ``work()`` (after a full garbage collection, so earlier garbage is not billed to it)."""
    gc.collect()
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def write_batch(directory: Path, day_index: int, rows: int, drift: float = 0.0) -> Path:
    """One synthetic day as a Parquet file (cached: the same arguments reuse the file)."""
    day = START + dt.timedelta(days=day_index)
    path = directory / f"churn-{day.isoformat()}-{rows}-{drift:g}.parquet"
    if not path.exists():
        synthetic.churn_batch(day, rows, SEED, drift).to_parquet(path, index=False)
    return path


def bench_config(project: str = "bench", **sections: dict) -> RetrainConfig:
    """What ``retrain init`` infers from a 5,000-row sample, reviewed as the demo does (business limits);
    ``sections`` override top-level sections (e.g. ``storage={...}``). ``triggers.min_new_rows`` is 0, so
    every run with newly validated rows retrains, as the bare script does."""
    sample = synthetic.churn_batch(START, 5000, SEED)
    config = infer_config(sample, "churned", timestamp="event_time", id_column="customer_id", project=project)
    declare_business_limits(config)
    config.triggers.min_new_rows = 0
    for name, values in sections.items():
        section = getattr(config, name)
        for key, value in values.items():
            setattr(section, key, value)
    return config


def write_project(directory: Path, **sections: dict) -> tuple[Path, RetrainConfig]:
    """``directory/retrain.yaml`` (storage home ``directory/.retrain``), parsed back as the CLI would."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "retrain.yaml"
    path.write_text(render_config(bench_config(**sections), "the benchmark's synthetic sample"))
    return path, load_config(path)


@contextlib.contextmanager
def project_with_champion(
    directory: Path, data: Path, rows: int = 2000
) -> Iterator[tuple[Path, RetrainConfig, object]]:
    """A project in ``directory`` with one landed batch whose first in-process tick trained the champion:
    ``(config_path, config, instance)``, the instance open while the ``with`` lasts."""
    from retrain_assets.app.execution import ingest
    from retrain_assets.app.instance import project_instance
    from retrain_assets.app.ticking import tick

    config_path, config = write_project(directory)
    with project_instance(config) as instance:
        ingest(config, instance, write_batch(data, 0, rows))
        first = tick(config_path, instance)
        if not any(launch.outcome and launch.outcome.success for launch in first.launches):
            raise RuntimeError(f"the first tick did not train a champion: {first.to_json()}")
        yield config_path, config, instance


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a benchmark or a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    """One GraphQL request to the UI on ``port``, as a client that is not a browser sends it (JSON, no Origin);
    its ``data``, or a RuntimeError naming the errors."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"retrain-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def memory_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of this process in bytes, from ``/proc/self/status``."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}


def machine() -> dict[str, str]:
    """Cores, RAM, CPU model, Python, the versions of the libraries the benchmarks exercise, and a fingerprint of
    the package's sources (other people edit them while the benchmark runs; this says which code was measured)."""
    import platform
    from importlib import metadata

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    packages = ["dagster", "deltalake", "great_expectations", "mlflow", "scikit-learn", "pandas", "pyarrow", "numpy"]
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    import hashlib

    import retrain_assets

    digest = hashlib.sha256()
    for source in sorted(Path(retrain_assets.__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return {
        "package": f"retrain_assets {metadata.version('retrain-assets')}, sources sha256 {digest.hexdigest()[:12]}",
        "cores": str(os.cpu_count()),
        "ram": f"{ram / 2**30:.1f} GiB",
        "cpu": cpu,
        "python": platform.python_version(),
        "packages": versions,
    }
