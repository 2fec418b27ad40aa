"""The project's Kedro context: the parameters checked by ``certssb.config`` before Kedro types them.

Kedro 1.7 validates the parameters when it builds the catalog (``KedroContext._get_validated_params``,
before any ``before_pipeline_run`` hook): every ``params:<block>`` input whose node argument is annotated
with a block class of ``certssb.config`` is built as that block (``kedro.validation.ParameterValidator``), so
the nodes get typed blocks. Just before that, :class:`ProjectContext` runs :func:`certssb.config.validate` on
the raw parameters for the run's pipelines (and on each study cell they read, ``study.grid.check_cells``):
what Kedro cannot do (unknown keys with a "did you mean", the rules that span blocks) and the project's
one-line error (a :class:`~certssb.core.validation.ConfigError`,
which ``kedro run`` prints as ``Error: ...`` with exit status 2, nothing written). Should Kedro's own
validation still refuse a block (one outside the run's pipelines), its error is given the same one line.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.context import KedroContext

from certssb import config
from certssb.pipelines.study import grid


def _scope(pipelines: list[str] | None) -> set[str]:
    """The pipelines Kedro validates for (None: the default run, or a read outside a run)."""
    return set(pipelines) if pipelines else {"__default__"}


def _inputs(names: set[str]) -> set[str]:
    """The inputs of the registered pipelines ``names`` (those not registered: none)."""
    from kedro.framework.project import pipelines

    out: set[str] = set()
    for name in names:
        if name in pipelines:
            out |= set(pipelines[name].inputs())
    return out


def one_line(error: Exception, raw: dict[str, Any]) -> config.ConfigError:
    """Kedro's ``ParameterValidationError`` (one line per parameter) as the project's one line: the first
    block that :func:`certssb.config.block` refuses, else Kedro's first line."""
    for name in config.BLOCKS:
        if isinstance(raw.get(name), dict):
            try:
                config.block(name, raw[name])
            except config.ConfigError as exc:
                return exc
    lines = [line.removeprefix("- ") for line in str(error).splitlines()[1:] if line.strip()]
    return config.ConfigError(lines[0] if lines else str(error))


class ProjectContext(KedroContext):
    """``certssb.config.validate`` on the raw parameters, then Kedro's typed parameter validation."""

    def _get_validated_params(self) -> dict[str, Any]:
        from kedro.validation import ParameterValidationError

        scope = self._pipelines_to_validate
        fresh = self._validated_params_cache is None or self._cached_validation_scope != scope
        raw: dict[str, Any] = {}
        if fresh:
            try:
                raw = dict(self.config_loader["parameters"])
            except Exception:  # noqa: BLE001 - no parameters: Kedro's own handling (a warning)
                raw = {}
            if raw:
                config.validate({k: v for k, v in raw.items() if k != grid.CELL_PARAMS}, _scope(scope))
                grid.check_cells(raw, _inputs(_scope(scope)))
        try:
            return super()._get_validated_params()
        except ParameterValidationError as exc:
            raise one_line(exc, raw) from exc
