"""Peer benchmark: one retrain cycle as a DVC 3 pipeline, the tool users would otherwise pick, against a whole
``retrain tick`` process on the same data.

Platform: exactly :func:`bench.cycle.measure_process`'s side (a :class:`bench.cycle.PlatformCycle` set up untimed,
then one ``retrain --config ... tick`` process).

DVC: a scratch git + DVC project (set up untimed: the previous model trained on day 0 by
:class:`bench.cycle.BaselineCycle`, the two Parquet batches copied in, ``git init``, ``dvc init``, the MLflow sqlite
store created, as the platform's store already exists) whose ``dvc.yaml`` has the four stages a DVC user would
write, each ``python stages.py STAGE`` with the project's interpreter (DVC only orchestrates): prepare (accepted +
new batch to one Parquet file), validate (Great Expectations on the new batch, the hard rules of ``retrain.yaml``),
train (``build_pipeline`` on the id-hash train split, joblib), evaluate (candidate and previous model on the
holdout, params, metrics and model logged to MLflow, ``metrics.json`` as the DVC metric). Timed: one
``dvc repro`` process.

Each command runs under a small wrapper process that times it and reports
``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak RSS of the largest single process in the command's tree (DVC's
stages run one after another and are reaped, so they count), the same measure on both sides. The wrapper itself
is small, so the pages a forked child shares with it before its exec hardly count.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench.cycle import BaselineCycle, PlatformCycle, batches
from bench.workload import Measurement, scratch

REPOSITORY = Path(__file__).resolve().parent.parent
DVC = REPOSITORY / ".venv-dvc" / "bin" / "dvc"
MB = 2**20

# Runs argv[1:], then prints its wall time and the peak RSS (bytes) of the largest process of its tree.
PEAK_WRAPPER = """\
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print("\\n" + json.dumps({"seconds": seconds, "peak": peak}))
sys.exit(code)
"""

STAGES = '''\
"""The retrain cycle as DVC stages: python stages.py prepare|validate|train|evaluate (see dvc.yaml)."""

import json
import sys
from pathlib import Path

import pandas as pd

from retrain_assets.core.config import load_config

config = load_config(Path("retrain.yaml"))


def prepare():
    """The accepted data and the new batch as one frame."""
    parts = [pd.read_parquet("data/accepted.parquet"), pd.read_parquet("data/new.parquet")]
    pd.concat(parts, ignore_index=True).to_parquet("combined.parquet", index=False)


def validate():
    """The new batch against the hard rules of retrain.yaml; the stage fails when one is broken."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    data, rules = config.data, config.validation
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("files").add_dataframe_asset("new_batch")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": pd.read_parquet("data/new.parquet")}
    )
    suite = gx.ExpectationSuite(name="new_batch")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=list(data.columns), exact_match=True))
    for name in data.columns:
        rule = rules.columns.get(name)
        if name == data.target or (rule is not None and not rule.nullable):
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
    for name, rule in rules.columns.items():
        if rule.hard_min is not None or rule.hard_max is not None:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=rule.hard_min, max_value=rule.hard_max)
            )
        if rule.domain is not None and rule.closed:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=rule.domain))
    if rules.target_classes is not None:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=data.target, value_set=rules.target_classes))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows))
    result = batch.validate(suite)
    Path("validation.json").write_text(json.dumps(result.describe_dict(), default=str))
    if not result.success:
        sys.exit(f"the new batch failed validation: {result.describe()}")


def train():
    """The candidate on the id-hash train split of all rows."""
    import joblib

    from bench.baseline import train as fit

    joblib.dump(fit(pd.read_parquet("combined.parquet"), config), "candidate.joblib")


def evaluate():
    """Candidate and previous model on the holdout; the run in MLflow, the decision in metrics.json."""
    import joblib
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import sklearn
    from mlflow.models import infer_signature

    from bench.baseline import evaluate as score, split

    _, holdout = split(pd.read_parquet("combined.parquet"), config)
    candidate = joblib.load("candidate.joblib")
    scores = score(candidate, holdout, config)
    previous = score(joblib.load("previous.joblib"), holdout, config)
    rule = config.promotion
    value = scores[rule.metric]
    promoted = bool(
        (rule.minimum is None or value >= rule.minimum)
        and value - previous[rule.metric] >= max(rule.margin, np.nextafter(0, 1))
    )
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run():
        mlflow.log_params({"estimator": config.model.estimator, **config.model.params})
        mlflow.log_metrics({**scores, **{f"previous_{name}": v for name, v in previous.items()}})
        mlflow.sklearn.log_model(
            candidate,
            name="model",
            signature=infer_signature(holdout[list(config.data.features)].head(0)),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"pandas=={pd.__version__}"],
            skops_trusted_types=["numpy.dtype"],  # what MLflow's skops format asks to be told for this pipeline
        )
    Path("metrics.json").write_text(json.dumps({"promoted": promoted, "candidate": scores, "previous": previous}))
    print("promoted" if promoted else "not promoted")


if __name__ == "__main__":
    {"prepare": prepare, "validate": validate, "train": train, "evaluate": evaluate}[sys.argv[1]]()
'''


def dvc_pipeline() -> dict:
    """``dvc.yaml``: every stage depends on the script and the project file besides its data."""
    python = f"{shlex.quote(sys.executable)} stages.py"
    code = ["stages.py", "retrain.yaml"]
    return {
        "stages": {
            "prepare": {
                "cmd": f"{python} prepare",
                "deps": [*code, "data/accepted.parquet", "data/new.parquet"],
                "outs": ["combined.parquet"],
            },
            "validate": {
                "cmd": f"{python} validate",
                "deps": [*code, "data/new.parquet"],
                "outs": ["validation.json"],
            },
            "train": {
                "cmd": f"{python} train",
                "deps": [*code, "combined.parquet", "validation.json"],
                "outs": ["candidate.joblib"],
            },
            "evaluate": {
                "cmd": f"{python} evaluate",
                "deps": [*code, "combined.parquet", "candidate.joblib", "previous.joblib"],
                "metrics": [{"metrics.json": {"cache": False}}],
            },
        }
    }


def dvc_project(directory: Path, accepted: Path, new: Path) -> Path:
    """The scratch DVC project of one repetition, ready for ``dvc repro`` (untimed); returns ``directory``."""
    import mlflow
    import yaml

    reference = BaselineCycle(directory, accepted, new)  # retrain.yaml and previous.joblib (trained on day 0)
    (directory / "data").mkdir()
    shutil.copyfile(accepted, directory / "data" / "accepted.parquet")
    shutil.copyfile(new, directory / "data" / "new.parquet")
    (directory / "stages.py").write_text(STAGES)
    (directory / "dvc.yaml").write_text(yaml.safe_dump(dvc_pipeline(), sort_keys=False))
    for command in (
        ["git", "init", "--quiet"],
        [str(DVC), "init", "--quiet"],
        [str(DVC), "config", "core.analytics", "false"],
        [str(DVC), "config", "core.check_update", "false"],
    ):
        subprocess.run(command, cwd=directory, env=environment(), capture_output=True, text=True, check=True)
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")
    store.create_experiment(reference.config.mlflow.experiment, artifact_location=(directory / "mlartifacts").as_uri())
    return directory


def environment() -> dict[str, str]:
    """The benchmark's environment for both sides, with the repository importable (the stages import
    ``bench.baseline``) and DVC's network calls off."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def run_measured(side: str, command: list[str], cwd: Path) -> tuple[float, int, str]:
    """``command`` under :data:`PEAK_WRAPPER`: its seconds, its tree's peak RSS (bytes) and its stdout;
    raises with the tail of the output when it fails."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *command],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{side} process failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["seconds"], report["peak"], done.stdout


def measure(data: Path, rows: int, repetitions: int, warmup: int = 1) -> dict[str, Measurement]:
    """``retrain tick`` and ``dvc repro`` as whole processes over ``rows`` rows, alternating, ``warmup`` +
    ``repetitions`` times each on fresh projects: seconds (``retrain``, ``dvc``) and peak RSS in bytes
    (``retrain_rss``, ``dvc_rss``)."""
    if not DVC.exists():
        raise FileNotFoundError(f"no DVC at {DVC}: run scripts/ensure-dvc (it installs DVC into .venv-dvc)")
    accepted, new = batches(data, rows)
    retrain = Path(sys.executable).with_name("retrain")
    results = {name: Measurement() for name in ("retrain", "dvc", "retrain_rss", "dvc_rss")}
    for index in range(warmup + repetitions):
        with scratch(f"peer-dvc-{rows}") as directory:
            PlatformCycle(directory / "platform", accepted, new).close()
            project = dvc_project(directory / "dvc", accepted, new)
            config = str(directory / "platform" / "retrain.yaml")
            seconds, peak, said = run_measured("retrain", [str(retrain), "--config", config, "tick"], directory)
            if "promoted" not in said:
                raise RuntimeError(f"retrain tick reached no decision:\n{said[-2000:]}")
            samples = [("retrain", seconds), ("retrain_rss", peak)]
            seconds, peak, said = run_measured("dvc", [str(DVC), "repro"], project)
            metrics = project / "metrics.json"
            if not metrics.exists() or "promoted" not in json.loads(metrics.read_text()):
                raise RuntimeError(f"dvc repro wrote no decision to metrics.json:\n{said[-2000:]}")
            samples += [("dvc", seconds), ("dvc_rss", peak)]
            if index >= warmup:
                for name, value in samples:
                    results[name].samples.append(value)
    return results


def main(argv: list[str]) -> None:
    import argparse
    import tempfile
    import warnings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repetitions", type=int, default=3, help="timed repetitions after one warm-up")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="retrain-bench-data-") as data_dir:
        os.chdir(data_dir)  # whatever a library writes relative to the working directory lands here
        try:
            results = measure(Path(data_dir), args.rows, args.repetitions)
        finally:
            os.chdir(home)
    retrain, dvc = results["retrain"], results["dvc"]
    print(f"one retrain cycle, {args.rows:,} rows, whole processes, median of {args.repetitions} after a warm-up")
    for label, seconds, peak in (
        ("retrain tick", retrain, results["retrain_rss"]),
        ("dvc repro   ", dvc, results["dvc_rss"]),
    ):
        print(f"  {label}  {seconds.median:6.2f} s (spread {seconds.spread()} s)  peak RSS {peak.median / MB:6.0f} MB")
    print(
        f"  retrain / dvc: {retrain.median / dvc.median:.2f}x time, "
        f"{results['retrain_rss'].median / results['dvc_rss'].median:.2f}x peak RSS"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
