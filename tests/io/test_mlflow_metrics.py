"""certssb.io.mlflow_metrics: metric names without dots (prefix and keys), so an MLflow filter needs no
backticks; a dataset finds its own metrics by its dot-free prefix, not another's."""

from __future__ import annotations

import mlflow
import pytest
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

from certssb.io.mlflow_metrics import DotFreeMetricsHistoryDataset


def test_the_names_lose_every_dot_and_keep_value_and_step():
    ds = DotFreeMetricsHistoryDataset(run_id="r", prefix="uniform.metrics")
    got = list(ds._build_args_list_from_metric_item("cert_acc.r050", [{"value": 0.5, "step": 0}]))
    assert got == [("uniform_metrics_cert_acc_r050", 0.5, 0)]
    base = MlflowMetricsHistoryDataset(run_id="r", prefix="uniform.metrics")  # what it changes
    assert [
        k for k, _, _ in base._build_args_list_from_metric_item("cert_acc.r050", {"value": 1, "step": 0})
    ] == ["uniform.metrics.cert_acc.r050"]
    assert ds._is_dataset_metric("uniform_metrics_cert_acc_r050")
    assert not ds._is_dataset_metric("cohen_metrics_cert_acc_r050")
    assert DotFreeMetricsHistoryDataset(run_id="r")._is_dataset_metric("anything.at_all")  # no prefix: all


@pytest.fixture
def uri(tmp_path, monkeypatch):
    """A tracking database of this test's own, for the dataset's ``MlflowClient()`` too; restored after."""
    uri, before = f"sqlite:///{tmp_path / 'mlflow.db'}", mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(before)


def test_save_load_round_trip_through_mlflow(uri):
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("metrics")).info.run_id
    ds = DotFreeMetricsHistoryDataset(run_id=run_id, prefix="uniform.metrics")
    ds.save(
        {
            "cert_acc.r050": {"value": 0.5, "step": 0},
            "loss": [{"value": 0.9, "step": 0}, {"value": 0.4, "step": 1}],
        }
    )
    assert set(client.get_run(run_id).data.metrics) == {
        "uniform_metrics_cert_acc_r050",
        "uniform_metrics_loss",
    }
    loaded = ds.load()
    assert loaded["uniform_metrics_cert_acc_r050"] == {"value": 0.5, "step": 0}
    assert [m["value"] for m in loaded["uniform_metrics_loss"]] == pytest.approx([0.9, 0.4])
    assert ds.exists()
    assert not DotFreeMetricsHistoryDataset(run_id=run_id, prefix="cohen.metrics").exists()
    hits = client.search_runs(
        [client.get_run(run_id).info.experiment_id], "metrics.uniform_metrics_loss < 0.5"
    )
    assert [r.info.run_id for r in hits] == [run_id]  # a filter with no backticks
