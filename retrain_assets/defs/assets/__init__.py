"""The retraining lineage: raw_data → validated_features → candidate_model → evaluation_report → prod_model."""

from retrain_assets.defs.assets.evaluation import evaluation_report
from retrain_assets.defs.assets.features import validated_features
from retrain_assets.defs.assets.model import candidate_model
from retrain_assets.defs.assets.promotion import prod_model
from retrain_assets.defs.assets.raw import raw_data

LINEAGE = [raw_data, validated_features, candidate_model, evaluation_report, prod_model]
