"""``prod_model``: the champion. The candidate takes the ``champion`` alias only when it earns it."""

from dagster import AssetExecutionContext, DataVersion, Failure, Output, asset

from retrain_assets import training
from retrain_assets.registry import CHAMPION
from retrain_assets.resources import RetrainProject


@asset(group_name="retrain", kinds={"mlflow"}, code_version="1")
def prod_model(context: AssetExecutionContext, project: RetrainProject, evaluation_report: dict) -> Output[dict]:
    """Promotes the candidate when there is no champion and it meets the minimum, or when it beats the
    champion by the margin on the same holdout; otherwise the champion stays and the reason is recorded on
    the candidate's model version. Losing is a normal outcome: the run succeeds either way."""
    config = project.load()
    registry = project.registry(config)
    current = registry.by_alias(CHAMPION)
    current_version = str(current.version) if current is not None else None
    if current_version != evaluation_report["champion_version"]:
        raise Failure(
            f"prod_model: the champion moved from v{evaluation_report['champion_version']} to v{current_version} "
            "since evaluation_report ran; materialize evaluation_report again"
        )
    decision = training.decide(evaluation_report["candidate"], evaluation_report["champion"], config)
    candidate = evaluation_report["candidate_version"]
    metric = config.promotion.metric
    champion_metrics = evaluation_report["champion"] or {}
    registry.record_decision(
        candidate,
        decision.promote,
        decision.reason,
        {
            "compared_with": current_version or "none",
            f"champion_{metric}": champion_metrics.get(metric, "none"),
            f"candidate_{metric}": evaluation_report["candidate"][metric],
        },
    )
    previous = registry.promote(candidate) if decision.promote else None
    champion = candidate if decision.promote else current_version
    context.log.info(f"{'promoted' if decision.promote else 'kept champion'}: {decision.reason}")
    return Output(
        {"champion_version": champion, "promoted": decision.promote, "reason": decision.reason},
        data_version=DataVersion(f"model-v{champion}" if champion else "no-champion"),
        metadata={
            "champion_version": champion,
            "promoted": decision.promote,
            "reason": decision.reason,
            "candidate_version": candidate,
            "previous_champion": previous or current_version,
            f"candidate_{metric}": evaluation_report["candidate"][metric],
            f"champion_{metric}": champion_metrics.get(metric),
            "delta_version": evaluation_report["delta_version"],
        },
    )
