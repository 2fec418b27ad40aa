"""certssb.config: every block accepts the shipped parameters and refuses bad values in the project's form."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from certssb import config
from certssb.core import certify, ensemble, models
from certssb.core.validation import ConfigError
from certssb.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]
ALL = {"__default__", "study"}


@pytest.fixture(scope="module")
def base() -> dict:
    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        env="local",
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )
    params = loader["parameters"]
    params.setdefault(
        "audit",
        {
            "points": 40,
            "factors": [0.95, 2, 4],
            "strategies": ["pgd", "brew"],
            "columns": ["radius", "radius_published"],
            "quick": False,
            "seed": 0,
            "k": 8,
        },
    )
    return params


def with_value(params: dict, path: str, value) -> dict:
    out = copy.deepcopy(params)
    cur = out
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[k]
    cur[keys[-1]] = value
    return out


def refused(params: dict, pipelines=frozenset(ALL)) -> str:
    with pytest.raises(ConfigError) as info:
        config.validate(params, set(pipelines))
    return str(info.value)


def test_the_shipped_parameters_pass_for_every_pipeline(base):
    for name in ("data_engineering", "modelling", "evaluation", "__default__", "study", "audit"):
        cfg = config.validate(base, {name})
        assert isinstance(cfg, config.Config)
        for block in config.blocks_for({name}) - {"num_threads"}:  # num_threads: null is its default
            assert getattr(cfg, block) is not None, (name, block)


@pytest.mark.parametrize("value", [0, -2, 1.5, "4", True])
def test_a_bad_num_threads_is_refused(base, value):
    assert "parameter 'num_threads'" in refused(with_value(base, "num_threads", value), {"modelling"})


def test_num_threads_accepts_null_and_a_count(base):
    assert config.validate(with_value(base, "num_threads", 1), {"modelling"}).num_threads == 1
    assert config.validate(base, {"evaluation"}).num_threads is None


def test_only_the_blocks_of_the_selected_pipelines_are_validated(base):
    bad = with_value(base, "model.epochs", -1)
    assert config.validate(bad, {"data_engineering"}).model is None  # not read by data_engineering
    assert "parameter 'model.epochs' = -1 is invalid" in refused(bad, {"modelling"})


# one bad value per block: (path, value, allowed-part of the message)
BAD = [
    ("seed", -1, "must be an integer in [0, inf)"),
    ("device", "tpu", "allowed values are " + ", ".join(repr(d) for d in ensemble.DEVICES)),
    ("data.dataset", "imagenet", "allowed values are 'mnist_embedded'"),
    ("data.test_fraction", 1.0, "must be a number in (0, 1)"),
    ("data.download", "yes", "allowed values are True, False"),
    ("data.classes", [3], "at least 2 distinct class indices"),
    ("data.certify_size", 0, "must be an integer in (0, inf)"),
    ("attack.name", "nope", "allowed values are 'none'"),
    ("attack.trigger", "nope", "allowed values are 'onepixel'"),
    ("attack.poison_rate", 1.5, "must be a number in [0, 1]"),
    ("attack.delta", -0.1, "must be a number in [0, inf)"),
    ("attack.label_mode", "grey", "allowed values are 'dirty'"),
    ("attack.certifier_labels", "tie", "allowed values are 'split', 'random', 'keyed', 'runner_up'"),
    ("attack.key_size", 0, "must be an integer in (0, inf)"),
    ("attack.collapse_share", 0.5, "must be a number in (0, 0.5)"),
    ("attack.key_amplitude", 0.6, "must be a number in (0, 0.5]"),
    ("noise.sigma", -1, "must be a number in (0, inf)"),
    ("noise.sigma", "0.25", "must be a number in (0, inf)"),
    ("noise.num_models", 7.5, "must be an integer in (0, inf)"),
    (
        "model.architecture",
        "resnet",
        "allowed values are " + ", ".join(repr(a) for a in models.ARCHITECTURES),
    ),
    ("model.lr", 0, "must be a number in (0, inf)"),
    ("pilot.epochs", 0, "must be an integer in (0, inf)"),
    ("sigma_opt.gradient", "adam", "allowed values are 'reparam', 'prefactor'"),
    ("sigma_opt.psi_clamp", [0.9, 0.1], "0 < low < high < 1"),
    ("ensemble.backend", "gpu", "allowed values are 'sequential', 'vectorised', 'ray'"),
    ("evaluation.bound", "x", "allowed values are " + ", ".join(repr(b) for b in certify.BOUNDS)),
    ("evaluation.alpha", 0, "must be a number in (0, 1)"),
    ("evaluation.radii", [0.5, 0.25], "must be strictly increasing"),
    ("evaluation.storage_rule", "keep", "allowed values are 'trim'"),
    ("evaluation.allow_tiny", "true", "allowed values are True, False"),
    ("study.sigmas", [], "must be a non-empty list"),
    ("study.attacks", ["trojan"], "allowed values are"),
    ("audit.stop_rate", 0, "must be a number in (0, 1]"),
    ("audit.resigma", "yes", "allowed values are True, False"),
    ("audit.selection", "all", "allowed values are 'band', 'stratified'"),
    ("audit.min_share", 1.5, "must be a number in (0, 1]"),
    ("audit.pgd_steps", 0, "must be an integer in (0, inf)"),
    ("audit.pgd_draws", 0, "must be an integer in (0, inf)"),
    ("audit.brew_steps", 0, "must be an integer in (0, inf)"),
    ("audit.surrogate_members", 0, "must be an integer in (0, inf)"),
    ("audit.quick_num_models", 0, "must be an integer in (0, inf)"),
    ("audit.columns", ["r"], "allowed values are 'radius', 'radius_published'"),
    ("audit.k", 0, "must be an integer in (0, inf)"),
    ("uniform.method", "cert_ssb", "allowed values are 'uniform'"),
    ("cert_ssb.method", "uniform", "allowed values are 'cert_ssb'"),
]


@pytest.mark.parametrize(("path", "value", "allowed"), BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_a_bad_value_names_the_parameter_its_value_and_what_is_allowed(base, path, value, allowed):
    pipelines = {"audit"} if path.startswith("audit") else ALL
    msg = refused(with_value(base, path, value), pipelines)
    name = path + ("[]" if isinstance(value, list) and value and path.startswith(("study", "audit")) else "")
    shown = repr(value[0]) if name.endswith("[]") else repr(value)
    assert msg.startswith(f"parameter '{name}' = {shown} is invalid: "), msg
    assert allowed in msg, msg
    assert "\x00" not in msg


@pytest.mark.parametrize(
    ("path", "suggestion"),
    [
        ("noise.num_modles", "noise.num_models"),
        ("evaluation.alfa", "evaluation.alpha"),
        ("ensemble.ray.adress", "ensemble.ray.address"),
        ("nosie", "noise"),
        ("study.quick_overrides.model.epocs", "study.quick_overrides.model.epochs"),
    ],
)
def test_an_unknown_key_is_refused_with_did_you_mean(base, path, suggestion):
    params = with_value(base, path, 7)
    msg = refused(params)
    assert msg == f"parameter '{path}' is not known: did you mean '{suggestion}'?"
    # whatever the pipeline: a typo is never silently ignored
    assert refused(params, {"data_engineering"}) == msg


def test_an_unknown_key_without_a_close_match_lists_the_keys(base):
    msg = refused(with_value(base, "pilot.zzzzzz", 1))
    assert msg == "parameter 'pilot.zzzzzz' is not known: the keys of block 'pilot' are epochs"


@pytest.mark.parametrize(
    ("changes", "name", "fragment"),
    [
        ({"evaluation.n0": 50}, "evaluation.n0", "n0 < M"),
        ({"evaluation.aggregation": "soft"}, "evaluation.aggregation", "needs hard votes"),
        ({"noise.num_draws": 2}, "noise.num_draws", "one vote per model"),
        ({"sigma_opt.max_decrease": 0.25}, "sigma_opt.max_decrease", "must stay > 0"),
        ({"attack.target": 10}, "attack.target", "must be an integer in [0, 9]"),
        ({"data.classes": [1, 0], "attack.target": 2}, "attack.target", "must be an integer in [0, 1]"),
        (
            {"attack.name": "abstain", "attack.label_mode": "clean"},
            "attack.label_mode",
            "only 'dirty' applies",
        ),
        (
            {"attack.name": "abstain", "attack.certifier_labels": "runner_up"},
            "attack.certifier_labels",
            "allowed values are 'split', 'random'",
        ),
        (
            {"attack.name": "radius_collapse", "attack.certifier_labels": "random"},
            "attack.certifier_labels",
            "allowed values are 'split', 'runner_up'",
        ),
        ({"data.dataset": "local"}, "data.local_path", "needs the path of an .npz"),
        ({"evaluation.selection": "split", "evaluation.n0": 0}, "evaluation.n0", "n0 >= 1"),
    ],
)
def test_cross_block_rules(base, changes, name, fragment):
    params = base
    for path, value in changes.items():
        params = with_value(params, path, value)
    msg = refused(params)
    assert msg.startswith(f"parameter '{name}' = "), msg
    assert fragment in msg, msg


def test_hoeffding_accepts_soft_votes_and_several_draws(base):
    params = with_value(with_value(base, "evaluation.bound", "hoeffding"), "evaluation.aggregation", "soft")
    params = with_value(with_value(params, "noise.num_draws", 3), "evaluation.allow_tiny", True)
    assert config.validate(params, ALL).noise.num_draws == 3
    # Hoeffding's ceiling at M - n0 = 45 is 0.55 sigma: the pre-run check catches it without the escape
    assert "noise.num_models >= " in refused(with_value(params, "evaluation.allow_tiny", False))


# ------------------------------------------------------------------ the radius ceiling before the run
def test_tiny_M_stops_before_the_run_and_names_the_M_needed(base):
    params = with_value(with_value(base, "noise.num_models", 10), "evaluation.n0", 5)
    msg = refused(params, {"__default__"})
    assert msg.startswith("parameter 'noise.num_models' = 10 is invalid: "), msg
    assert "evaluation.allow_tiny" in msg
    need = int(re.search(r"noise.num_models >= (\d+)", msg).group(1))
    e, n = base["evaluation"], base["noise"]
    r_min = min(r for r in e["radii"] if r > 0)

    def reach(m: int) -> float:
        return n["sigma"] * certify.radius_ceiling(m - e["n0"], e["alpha"], e["bound"], e["alpha_split"])

    assert reach(need) >= r_min > reach(need - 1)  # the smallest such M, from the bound itself
    config.validate(with_value(params, "noise.num_models", need), {"__default__"})
    # the escape
    config.validate(with_value(params, "evaluation.allow_tiny", True), {"__default__"})
    # data_engineering and modelling certify nothing: no check there
    config.validate(params, {"data_engineering", "modelling"})


def test_models_needed_hoeffding_and_selection_same(base):
    e = config.block("evaluation", {**base["evaluation"], "bound": "hoeffding", "selection": "same"})
    m = config.models_needed(0.5, 0.25, e)
    assert m is not None
    assert 0.25 * certify.radius_ceiling(m, e.alpha, "hoeffding", e.alpha_split) >= 0.5
    assert 0.25 * certify.radius_ceiling(m - 1, e.alpha, "hoeffding", e.alpha_split) < 0.5
    assert config.models_needed(50.0, 0.25, e, limit=1000) is None  # out of reach: None, not a loop


def test_core_configs_built_from_the_blocks(base):
    cfg = config.validate(base, {"__default__"})
    sc = config.sigma_config(cfg.sigma_opt, cfg.noise.sigma)
    s0, so = base["noise"]["sigma"], base["sigma_opt"]
    assert (sc.sigma_min, sc.sigma_max) == (s0 - so["max_decrease"], s0 + so["max_increase"])
    tc = config.train_config(cfg.model, epochs=1)
    assert (tc.epochs, tc.architecture, tc.lr) == (1, base["model"]["architecture"], base["model"]["lr"])
    with pytest.raises(ConfigError, match=r"^parameter 'model.epochs' = 0 is invalid"):
        config.block("model", {**base["model"], "epochs": 0})


# ------------------------------------------------------------- core's argument names -> the parameter keys
def test_block_keys_maps_core_arguments_to_the_keys_the_call_site_means():
    keys = config.block_keys("attack", "evaluation", "noise", num_draws="cohen.num_draws")
    assert keys["poison_rate"] == "attack.poison_rate"  # a field: its key
    assert keys["attack"] == "attack.name"  # core's own name for a field (config.CORE_ARGS)
    assert keys["rule"] == "evaluation.storage_rule" and keys["sigma0"] == "noise.sigma"
    assert keys["num_draws"] == "cohen.num_draws"  # the call site decides
    assert config.block_keys("pilot", "model")["epochs"] == "pilot.epochs"  # shared: the first block named
    assert config.block_keys("model", "pilot")["epochs"] == "model.epochs"
    assert config.block_keys("seed") == {"seed": "seed"}  # a top-level parameter is its own key
    with pytest.raises(KeyError, match="'noize'"):
        config.block_keys("noize")


def test_core_names_its_arguments_and_the_config_layer_names_the_keys():
    from certssb.core.audit import LadderConfig

    with pytest.raises(ConfigError, match=r"^parameter 'architecture' = 'resnet50' is invalid: allowed"):
        models.build_model("resnet50", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"^parameter 'model.architecture' = 'resnet50' is invalid"):
        with config.core_names(config.block_keys("model")):
            models.build_model("resnet50", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"^parameter 'audit.quick_strategies\[\]' = 'x' is invalid"):
        with config.core_names(config.block_keys("audit", strategies="audit.quick_strategies")):
            LadderConfig(strategies=("x",))
    with pytest.raises(ConfigError, match=r"^parameter 'n_train' = 0 is invalid"):  # core's name stays
        with config.core_names(config.block_keys("noise")):
            noise_plan(n_train=0)


def noise_plan(**kw):
    from certssb.core.noise import make_noise_plan

    args = dict(seed=0, num_models=2, sigma=0.5, num_draws=1, n_train=4, input_shape=(1, 2, 2))
    return make_noise_plan(**{**args, **kw})


def test_core_names_nest_the_innermost_names_first_and_keep_the_error_type():
    class Special(ConfigError):
        pass

    with pytest.raises(ConfigError, match=r"^parameter 'cohen.num_draws' = 0 is invalid"):
        inner = config.core_names({"num_draws": "cohen.num_draws"})
        with config.core_names(config.block_keys("noise")), inner:
            noise_plan(num_draws=0)
    with pytest.raises(Special, match=r"^parameter 'noise.sigma' is bad$"):
        with config.core_names(config.block_keys("noise")):
            raise Special("parameter 'sigma' is bad")


def test_train_config_leaves_an_overriding_epochs_to_the_caller(base):
    cfg = config.validate(base, {"__default__"})
    with pytest.raises(ConfigError, match=r"^parameter 'model.lr' = 0.0 is invalid"):
        config.train_config(cfg.model.model_copy(update={"lr": 0.0}))  # model_copy: no validation
    with pytest.raises(ConfigError, match=r"^parameter 'pilot.epochs' = 0 is invalid"):
        with config.core_names(config.block_keys("pilot", "model")):
            config.train_config(cfg.model, epochs=0)


def test_a_node_with_core_errors_keeps_its_signature_for_kedro_and_names_the_keys():
    import inspect
    import typing

    import torch

    from certssb.pipelines.data_engineering import nodes

    hints = typing.get_type_hints(nodes.make_noise_plan)  # what kedro's parameter validation reads
    assert hints["noise_params"] is config.NoiseBlock and nodes.make_noise_plan.__name__ == "make_noise_plan"
    names = list(inspect.signature(nodes.make_noise_plan).parameters)
    assert names == ["poisoned_train", "noise_params", "seed"]
    block = config.block("noise", {"sigma": 0.5, "num_models": 2, "num_draws": 1, "materialise": 0})
    train = {"x": torch.zeros(4, 1, 2, 2), "fingerprint": "f"}
    with pytest.raises(ConfigError, match=r"^parameter 'noise.num_models' = 0 is invalid"):
        nodes.make_noise_plan(train, block.model_copy(update={"num_models": 0}), 0)


def test_a_bad_quick_strength_grid_is_refused_before_the_run():
    import yaml

    root = Path(__file__).resolve().parents[1]
    params = {
        **yaml.safe_load((root / "conf/base/parameters.yml").read_text()),
        **yaml.safe_load((root / "conf/base/parameters_data_engineering.yml").read_text()),
        **yaml.safe_load((root / "conf/base/parameters_modelling.yml").read_text()),
        **yaml.safe_load((root / "conf/base/parameters_attack_strength.yml").read_text()),
    }
    config.validate(params, {"attack_strength"})
    params["strength"] = {**params["strength"], "quick": True, "quick_grid": {"epochs": [0]}}
    with pytest.raises(ConfigError, match=r"strength\.epochs.*strength\.quick_grid"):
        config.validate(params, {"attack_strength"})
    params["strength"]["quick"] = False  # not used: not checked beyond its keys
    config.validate(params, {"attack_strength"})


def _study_warnings(params: dict, caplog) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="certssb.config"):
        config.validate(params, {"study"})
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("study cells with sigma_0")]


def test_study_warns_once_per_uncertifiable_sigma_with_the_blocks_its_cells_run(base, caplog):
    params = with_value(base, "study.sigmas", [0.12, 0.5])
    # M = 50, n0 = 5: Clopper-Pearson's ceiling 1.07 sigma_0 misses r = 0.25 at sigma_0 = 0.12 only
    msgs = _study_warnings(params, caplog)
    assert len(msgs) == 1 and "sigma_0 = 0.12" in msgs[0] and "'noise.num_models' = 50" in msgs[0]
    # quick mode: the cells run the quick blocks (here M = 20, n0 = 2); the warning names them, once per sigma
    quick = with_value(
        with_value(params, "study.quick", True),
        "study.quick_overrides",
        {"noise": {"num_models": 20}, "evaluation": {"n0": 2}},
    )
    msgs = _study_warnings(quick, caplog)
    assert [m.split(":")[0] for m in msgs] == [
        "study cells with sigma_0 = 0.12",
        "study cells with sigma_0 = 0.5",
    ]
    assert all("'noise.num_models' = 20" in m for m in msgs)
    assert _study_warnings(with_value(params, "evaluation.allow_tiny", True), caplog) == []


# ------------------------------------------------------------------------------ certifiers (issue 19)
def test_methods_selects_certifiers_and_refuses_unknown_or_repeated_names(base):
    assert config.METHODS == ("uniform", "cert_ssb", "cohen")
    assert config.methods_from(base) == config.METHODS  # the shipped default: all three
    assert config.methods_from({"methods": ["cohen", "uniform"]}) == ("uniform", "cohen")  # table order
    assert config.methods_from({}) == config.METHODS
    msg = refused(with_value(base, "methods", ["uniform", "rab"]))
    assert "'methods[]' = 'rab'" in msg and "'uniform', 'cert_ssb', 'cohen'" in msg
    assert "must not repeat" in refused(with_value(base, "methods", ["uniform", "uniform"]))
    assert "non-empty list" in refused(with_value(base, "methods", []))
    # a certifier not selected needs no block
    two = with_value(base, "methods", ["uniform", "cert_ssb"])
    del two["cohen"]
    config.validate(two, {"__default__"})
    no_cohen = {k: v for k, v in base.items() if k != "cohen"}
    assert "parameter 'cohen' is missing" in refused(no_cohen, {"__default__"})


def test_cohen_block_is_checked(base):
    assert "'cohen.epochs'" in refused(with_value(base, "cohen.epochs", 0))
    assert "'cohen.n0'" in refused(with_value(base, "cohen.n0", -1))
    assert "'cohen.num_draws'" in refused(with_value(base, "cohen.num_draws", 2.5))
    assert "did you mean 'cohen.num_draws'" in refused(with_value(base, "cohen.num_drawz", 10))
    # N = 10 draws: the ceiling sigma_0 * Phi^-1(0.001^(1/10)) = 0 < 0.25, every certificate would be 0
    msg = refused(with_value(base, "cohen.num_draws", 10), {"__default__"})
    assert "'cohen.num_draws' = 10" in msg and "ceiling" in msg
    tiny = with_value(with_value(base, "cohen.num_draws", 10), "evaluation.allow_tiny", True)
    config.validate(tiny, {"__default__"})


def test_sigma_opt_rule_is_checked_and_paper_mnist_embedded_runs_the_released_update(base):
    assert "'sigma_opt.rule'" in refused(with_value(base, "sigma_opt.rule", "paper"))
    assert config.block("sigma_opt", base["sigma_opt"]).rule == "anchored"  # the default run: today's rule
    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        env="paper_mnist_embedded",
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )
    paper = loader["parameters"]
    cfg = config.validate(paper, {"__default__"})
    s = config.sigma_config(cfg.sigma_opt, cfg.noise.sigma)
    assert (s.rule, s.lr, s.steps) == ("released", 1e-4, 850)


@pytest.mark.parametrize("path", ["audit.factors", "audit.quick_factors"])
def test_a_bad_audit_ladder_is_refused_naming_the_parameter(base, path):
    msg = refused(with_value(base, path, [2, 1]), {"audit"})
    assert msg.startswith(f"parameter '{path}' = [2, 1] is invalid: ") and "strictly increasing" in msg, msg


@pytest.mark.parametrize(
    "env", sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name not in ("base", "local"))
)
def test_every_shipped_environment_passes_the_validation(env):
    """Each conf/<env> (merged over conf/base as Kedro does) passes for the pipelines it is documented for."""
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), env=env, **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    )
    params = loader["parameters"]
    pipelines = {"audit"} if env.startswith("audit") else {"__default__"}
    if env in ("certifier_curves", "certifier_epochs", "backdoor_sigma"):  # study grids
        pipelines = {"study"}
    config.validate(params, pipelines)


@pytest.fixture
def noise_with_foo() -> type[config.NoiseBlock]:
    """``NoiseBlock`` with one more field, as a contributor would add it (docs/CONVENTIONS.md)."""

    class NoiseWithFoo(config.NoiseBlock):
        foo: config.Pos = 0.5

    return NoiseWithFoo


def test_a_field_added_to_a_block_reaches_the_node_typed(base, noise_with_foo):
    """One field in one block plus its use: Kedro's own parameter validation (what a KedroSession runs
    when it builds the catalog) hands the node the typed block, the new field included."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline
    from kedro.runner import SequentialRunner
    from kedro.validation import ParameterValidationError, ParameterValidator

    def use(noise: config.NoiseBlock) -> float:  # the use: the node reads the field as an attribute
        assert isinstance(noise, noise_with_foo)
        return noise.foo * noise.sigma

    use.__annotations__["noise"] = noise_with_foo  # the class object (this module's annotations are strings)

    pipe = pipeline([node(use, "params:noise", "out")])
    validator = ParameterValidator({"p": pipe})

    def run(noise: dict) -> float:
        params = validator.validate_raw_params({**base, "noise": noise})
        catalog = DataCatalog({"params:noise": MemoryDataset(params["noise"])})
        SequentialRunner().run(pipe, catalog)
        return catalog.load("out")

    sigma = base["noise"]["sigma"]
    assert run({**base["noise"], "foo": 3}) == pytest.approx(3.0 * sigma)  # the configured value, a float
    assert run(base["noise"]) == pytest.approx(0.5 * sigma)  # the default where the key is absent
    with pytest.raises(ParameterValidationError, match=r"(?s)noise.*foo.*-1 is invalid"):  # checked
        validator.validate_raw_params({**base, "noise": {**base["noise"], "foo": -1}})


def test_every_parameter_block_of_every_pipeline_is_typed_by_kedro(base):
    """Every node argument fed a ``params:<block>`` is annotated with that block's class, in every registered
    pipeline, so Kedro builds them all (no "No typed parameter requirements found")."""
    from kedro.validation import TypeExtractor

    from certssb.pipeline_registry import register_pipelines

    registered = register_pipelines()
    needs = TypeExtractor(registered).extract_types_from_pipelines()
    inputs = {i.removeprefix("params:") for p in registered.values() for i in p.inputs()}
    # the certifiers' own blocks (``uniform: {method: uniform}``) reach only the MLflow logging node, which
    # logs every block as configured (``config.plain``); the nodes read ``params:<method>.method``, a str
    blocks = {
        n for n in inputs if n in set(config.BLOCKS) - set(config.METHODS) and isinstance(base.get(n), dict)
    }
    assert blocks >= {"data", "attack", "noise", "model", "pilot", "sigma_opt", "ensemble", "evaluation"}
    for name in sorted(blocks):
        assert needs.get(name) is type(config.block(name, base[name])), name
