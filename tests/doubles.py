"""Test doubles of Kedro objects shared by several test modules."""

from __future__ import annotations


class FakePipeline:
    """What the hooks and certssb.tracking.runs read of a Kedro pipeline: its free inputs and its outputs."""

    def __init__(self, inputs=(), outputs=()) -> None:
        self._inputs, self._outputs = set(inputs), set(outputs)

    def inputs(self):
        return self._inputs

    def all_outputs(self):
        return self._outputs
