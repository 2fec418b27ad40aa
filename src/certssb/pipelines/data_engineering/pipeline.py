"""data_engineering: raw_dataset -> poisoned_train, clean_test, triggered_test, poison_report ->
noise_plan."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import download, make_noise_plan, poison, poison_metrics


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(download, ["params:data", "params:seed"], "raw_dataset", name="download"),
            node(
                poison,
                [
                    "raw_dataset",
                    "params:data",
                    "params:attack",
                    "params:seed",
                    "params:noise",
                    "params:evaluation",
                ],
                ["poisoned_train", "clean_test", "triggered_test", "poison_report", "poison_summary"],
                name="poison",
            ),
            node(poison_metrics, "poison_summary", "poison_metrics", name="log_poison_metrics"),
            node(
                make_noise_plan,
                ["poisoned_train", "params:noise", "params:seed"],
                ["noise_plan", "noise_preview"],
                name="noise",
            ),
        ]
    )
