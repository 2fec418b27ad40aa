"""attack_strength: raw_dataset -> attack_strength_table -> attack_strength_weakest, attack_strength_figure.

Not part of the default run (~30 min on 2 cores; ``--params strength.quick=true``: about a minute):
    kedro run --pipelines=attack_strength
"""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import summarise_attack_strength, sweep_attack_strength


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                sweep_attack_strength,
                [
                    "raw_dataset",
                    "params:strength",
                    "params:attack",
                    "params:model",
                    "params:seed",
                    "params:device",
                ],
                "attack_strength_table",
                name="sweep_attack_strength",
            ),
            node(
                summarise_attack_strength,
                ["attack_strength_table", "params:strength"],
                ["attack_strength_weakest", "attack_strength_figure"],
                name="summarise_attack_strength",
            ),
        ]
    )
