"""MLflow: one experiment per goal, a run per training, the registry and its aliases.

Each run registers a version of `nextbest-<goal>` with the alias `challenger`. The alias
`champion` moves to it only when it beats the current champion's ROC-AUC on the same test
split by the promotion margin, or when there is no champion yet. Scoring loads
`models:/nextbest-<goal>@champion`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from ml.catalogue import Catalogue
from ml.goals import Goal
from ml.metrics import safe_auc
from ml.model import ConversionModel
from ml.plots import calibration_figure, importance_figure, precision_recall_figure
from ml.train import TrainingResult

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class ConversionPyfunc(mlflow.pyfunc.PythonModel):
    """The conversion model as an MLflow pyfunc: mart rows in, calibrated probabilities out."""

    def __init__(self, model: ConversionModel) -> None:
        self.model = model

    def predict(self, context, model_input, params=None):  # noqa: D102 - MLflow's interface
        return self.model.predict(pd.DataFrame(model_input))


@dataclass
class RegistryOutcome:
    """What one training run did in MLflow."""

    run_id: str
    experiment_id: str
    model_name: str
    version: str
    promoted: bool
    champion_version: str
    challenger_roc_auc: float
    champion_roc_auc: float | None
    decision: str


def connect(tracking_uri: str) -> MlflowClient:
    """Point MLflow (fluent API and client) at one tracking and registry store."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, goal: Goal, artifact_root: Path) -> str:
    """The goal's experiment id, created if missing.

    With a tracking server (`http(s)://`) the experiment takes the server's default artifact
    location, so model files go through the server to its artifact store and every host
    that trains or scores reads the same ones. With a local store they go under
    `artifact_root/<goal>`.
    """
    existing = client.get_experiment_by_name(goal.experiment_name)
    if existing is not None:
        return existing.experiment_id
    if client.tracking_uri.startswith(("http://", "https://")):
        return client.create_experiment(goal.experiment_name)
    location = (Path(artifact_root) / goal.name).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(goal.experiment_name, artifact_location=location.as_uri())


def decide_promotion(
    challenger_auc: float, champion_auc: float | None, margin: float
) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why, in words with the numbers."""
    if champion_auc is None or np.isnan(champion_auc):
        return True, f"no champion yet; challenger test ROC-AUC {challenger_auc:.4f}"
    if challenger_auc >= champion_auc + margin:
        return True, (
            f"challenger test ROC-AUC {challenger_auc:.4f} beats champion {champion_auc:.4f} "
            f"by {challenger_auc - champion_auc:+.4f} (margin {margin:.4f})"
        )
    return False, (
        f"challenger test ROC-AUC {challenger_auc:.4f} does not beat champion "
        f"{champion_auc:.4f} by the margin {margin:.4f} ({challenger_auc - champion_auc:+.4f})"
    )


def champion_version(client: MlflowClient, model_name: str) -> str | None:
    """The version holding the champion alias, or None."""
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException:
        return None


def load_champion(model_name: str) -> tuple[mlflow.pyfunc.PyFuncModel, str]:
    """Load `models:/<name>@champion` and return it with its version.

    Raises:
        LookupError: No version holds the alias.
    """
    client = MlflowClient()
    version = champion_version(client, model_name)
    if version is None:
        raise LookupError(f"model {model_name!r} has no version with the alias {CHAMPION!r}")
    return mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}"), version


def signature_for(model: ConversionModel) -> ModelSignature:
    """Input columns the model reads (all optional: a missing count means zero)."""
    inputs = [ColSpec("double", column, required=False) for column in model.spec.numeric]
    inputs += [
        ColSpec("string", "last_action", required=False),
        ColSpec("string", "previous_action", required=False),
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def model_input(model: ConversionModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of `frame` the signature names, typed as it says."""
    out = pd.DataFrame(index=frame.index)
    for column in model.spec.numeric:
        if column in frame.columns:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("last_action", "previous_action"):
        if column in frame.columns:
            out[column] = frame[column].astype("object").where(frame[column].notna(), None)
    return out


def pinned_requirements() -> list[str]:
    """The packages the logged model needs, at the versions installed here."""
    from importlib.metadata import version

    packages = ("mlflow", "xgboost", "scikit-learn", "pandas", "numpy", "cloudpickle")
    return [f"{name}=={version(name)}" for name in packages]


def log_and_register(
    result: TrainingResult,
    goal: Goal,
    catalogue: Catalogue,
    client: MlflowClient,
    artifact_root: Path,
    margin: float,
    extra_metrics: dict[str, float] | None = None,
    extra_params: dict[str, object] | None = None,
) -> RegistryOutcome:
    """Log a training run, register its model as challenger, and promote it if it wins.

    The current champion (if any) is loaded from the registry and scored on this run's test
    split, so both ROC-AUCs are measured on the same rows.
    """
    experiment_id = ensure_experiment(client, goal, artifact_root)
    model = result.model
    test = result.splits["test"]
    y_test = test["y"].to_numpy(dtype=int)
    challenger_auc = float(result.metrics["model_test_roc_auc"])
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{goal.name}") as run:
        mlflow.log_params({**result.params, **(extra_params or {})})
        metrics = {**result.metrics, **(extra_metrics or {})}
        metrics |= {f"seconds_{k}": v for k, v in result.seconds.items()}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        columns = ["user_id", "snapshot_at", *model.spec.input_columns, "y"]
        for name, part in result.splits.items():
            present = part[[c for c in columns if c in part.columns]].reset_index(drop=True)
            # Counts as floats: MLflow's schema treats integer columns as never missing.
            present = present.astype(
                {c: "float64" for c in present.columns if pd.api.types.is_integer_dtype(present[c])}
            )
            dataset = mlflow.data.from_pandas(present, name=f"{goal.name}-{name}", targets="y")
            mlflow.log_input(dataset, context=name)
        mlflow.log_dict(
            {
                "features": model.spec.names,
                "input_columns": model.spec.input_columns,
                "catalogue": [
                    {"event": a.event, "label": a.label, "converter_share": a.converter_share}
                    for a in catalogue.actions
                ],
                "conversion_event": catalogue.conversion_event,
            },
            "features.json",
        )
        shown = {
            "xgboost calibrated": result.test_scores["model"],
            "xgboost raw": result.test_scores["model_uncalibrated"],
            "logistic regression": result.test_scores["logreg"],
        }
        for path, figure in (
            ("plots/calibration_curve.png", calibration_figure(y_test, shown)),
            ("plots/precision_recall_curve.png", precision_recall_figure(y_test, shown)),
            (
                "plots/feature_importance.png",
                importance_figure(model.spec.names, model.booster.feature_importances_),
            ),
        ):
            mlflow.log_figure(figure, path)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ConversionPyfunc(model),
            signature=signature_for(model),
            input_example=model_input(model, test.head(3)),
            # Named outright: inferring them loads the model in a subprocess (~30 s).
            pip_requirements=pinned_requirements(),
            registered_model_name=goal.model_name,
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(goal.model_name, CHALLENGER, version)

        current = champion_version(client, goal.model_name)
        champion_auc = None
        if current is not None:
            champion = mlflow.pyfunc.load_model(f"models:/{goal.model_name}@{CHAMPION}")
            champion_scores = champion.predict(model_input(model, test))
            champion_auc = safe_auc(y_test, np.asarray(champion_scores, dtype=float))
        promoted, decision = decide_promotion(challenger_auc, champion_auc, margin)
        if promoted:
            client.set_registered_model_alias(goal.model_name, CHAMPION, version)
        holder = version if promoted else str(current)
        mlflow.log_metrics(
            {
                "promotion_challenger_test_roc_auc": challenger_auc,
                "promotion_promoted": float(promoted),
                **(
                    {"promotion_champion_test_roc_auc": champion_auc}
                    if champion_auc is not None
                    else {}
                ),
            }
        )
        mlflow.set_tags(
            {
                "promotion_decision": decision,
                "model_version": version,
                "champion_version": holder,
                "previous_champion_version": str(current),
            }
        )
        mlflow.log_dict(
            {
                "promoted": promoted,
                "decision": decision,
                "challenger_version": version,
                "challenger_test_roc_auc": challenger_auc,
                "previous_champion_version": current,
                "champion_test_roc_auc": champion_auc,
                "margin": margin,
            },
            "promotion.json",
        )
        log.info("model %s v%s: %s", goal.model_name, version, decision)
    return RegistryOutcome(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_name=goal.model_name,
        version=version,
        promoted=promoted,
        champion_version=holder,
        challenger_roc_auc=challenger_auc,
        champion_roc_auc=champion_auc,
        decision=decision,
    )


def dumps(outcome: RegistryOutcome) -> str:
    """The outcome as JSON, for logs and metadata."""
    return json.dumps(outcome.__dict__, default=str)
