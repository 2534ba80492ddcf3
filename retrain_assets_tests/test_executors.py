"""The same definitions on other executors: the config loads and validates, no cluster needed."""

import pytest
from dagster import validate_run_config

from retrain_assets.definitions import build_defs
from retrain_assets.defs.jobs import RETRAIN_JOB

K8S_RUN_CONFIG = {
    "execution": {
        "config": {
            "job_namespace": "retrain",
            "max_concurrent": 2,
            "env_vars": ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RETRAIN_CONFIG"],
            "step_k8s_config": {"container_config": {"resources": {"limits": {"memory": "4Gi"}}}},
        }
    }
}


def job_on(executor: str, monkeypatch, project):
    monkeypatch.setenv("RETRAIN_EXECUTOR", executor)
    return build_defs(str(project.path)).resolve_job_def(RETRAIN_JOB)


def test_default_runs_every_step_in_the_run_process(project, monkeypatch):
    monkeypatch.delenv("RETRAIN_EXECUTOR", raising=False)
    job = build_defs(str(project.path)).resolve_job_def(RETRAIN_JOB)
    assert job.executor_def.name == "in_process"
    assert job_on("multiprocess", monkeypatch, project).executor_def.name == "multi_or_in_process_executor"


def test_kubernetes_executor_config_validates(project, monkeypatch):
    job = job_on("k8s", monkeypatch, project)
    assert job.executor_def.name == "k8s"
    resolved = validate_run_config(job, K8S_RUN_CONFIG)["execution"]["k8s"]
    assert resolved["job_namespace"] == "retrain" and resolved["max_concurrent"] == 2
    with pytest.raises(Exception, match="namespace_typo"):
        validate_run_config(job, {"execution": {"config": {"namespace_typo": "x"}}})


def test_celery_executor_config_validates(project, monkeypatch):
    monkeypatch.setenv("RETRAIN_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    job = job_on("celery", monkeypatch, project)
    assert job.executor_def.name == "celery"
    validate_run_config(job, {})


def test_unknown_executor_is_a_clear_error(project, monkeypatch):
    with pytest.raises(ValueError, match="RETRAIN_EXECUTOR='slurm'"):
        job_on("slurm", monkeypatch, project)
