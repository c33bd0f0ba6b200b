"""The shared YAML + command-line config loader (vlprm.config), on the eval config."""

import pytest

from vlprm.config import load_config
from vlprm.evaluation.config import EvalConfig

BASE = "benchmarks:\n  - {name: puzzles, path: p}\npolicy: {model: m, n: 4}\nsearch: {strategies: [greedy]}\n" \
       "prm: {model: prm, system_prompt: vlprm, step_suffix: ''}\n"  # a PRM dir without a settings record


@pytest.fixture
def yaml_path(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(BASE)
    return p


def test_lists_numbers_and_nested_dataclass_lists(yaml_path):
    cfg = load_config(EvalConfig, yaml_path, [
        "--benchmarks", "[{name: mathvista, path: data/MV, split: testmini}, {name: mmmu, path: x, limit: 3}]",
        "--search.strategies", "greedy,beam", "--policy.n", "8", "--policy.temperature=1", "--seed=3"])
    assert [(b.name, b.path, b.split, b.limit) for b in cfg.benchmarks] == [
        ("mathvista", "data/MV", "testmini", None), ("mmmu", "x", None, 3)]
    assert cfg.benchmarks[0].key == "mathvista-testmini"
    assert cfg.search.strategies == ["greedy", "beam"]
    assert cfg.policy.n == 8 and isinstance(cfg.policy.n, int)
    assert cfg.policy.temperature == 1.0 and isinstance(cfg.policy.temperature, float)
    assert cfg.seed == 3 and cfg.policy.model == "m"  # YAML values not overridden stay
    # One strategy, a list written as YAML, and list items of a text list stay text.
    assert load_config(EvalConfig, yaml_path, ["--search.strategies", "beam"]).search.strategies == ["beam"]
    assert load_config(EvalConfig, yaml_path, ["--stages", "[sample, score]"]).stages == ["sample", "score"]
    assert load_config(EvalConfig, yaml_path, ["--only_benchmarks", "2024"]).only_benchmarks == ["2024"]


def test_booleans_and_none(yaml_path):
    for raw, want in (("false", False), ("False", False), ("no", False), ("0", False), ("true", True), ("1", True)):
        assert load_config(EvalConfig, yaml_path, ["--plots", raw]).plots is want
    with pytest.raises(ValueError, match="plots"):
        load_config(EvalConfig, yaml_path, ["--plots", "maybe"])
    for raw in ("null", "None", "~"):
        cfg = load_config(EvalConfig, yaml_path, ["--prm.system_prompt", raw, "--policy.temperature", raw,
                                                  "--only_benchmarks", raw])
        assert cfg.prm.system_prompt is None and cfg.policy.temperature is None and cfg.only_benchmarks is None
    # A non-optional list set to null is empty (not None, which would crash validate).
    cfg = load_config(EvalConfig, yaml_path, ["--search.strategies", "", "--prm.model", "prm"])
    assert cfg.search.strategies == []
    assert load_config(EvalConfig, yaml_path, ["--search.strategies", "null"]).search.strategies == []


def test_text_fields_keep_their_text(yaml_path):
    prompt = "Judge: is each step correct? ### Answer with + or - #1"
    cfg = load_config(EvalConfig, yaml_path, ["--prm.system_prompt", prompt, "--run_name", "0123",
                                              "--policy.model=yes", "--output_root", "'quoted'"])
    assert cfg.prm.system_prompt == prompt  # YAML would make a mapping and cut the "#" comment
    assert cfg.run_name == "0123" and cfg.policy.model == "yes"
    assert cfg.output_root == "quoted"  # quoting on purpose still works
    assert load_config(EvalConfig, yaml_path, ["--shard", "1/4"]).shard == "1/4"


def test_unknown_keys_and_bad_values_are_errors(yaml_path):
    with pytest.raises(ValueError, match=r"policy\.nn.*valid keys"):
        load_config(EvalConfig, yaml_path, ["--policy.nn", "3"])
    with pytest.raises(ValueError, match="unknown search strategies"):
        load_config(EvalConfig, yaml_path, ["--search.strategies", "greedy,bfs"])
    with pytest.raises(ValueError, match="unknown aggregation"):
        load_config(EvalConfig, yaml_path, ["--prm.aggregations", "mean,avg"])
    with pytest.raises(ValueError, match="needs a value"):
        load_config(EvalConfig, yaml_path, ["--policy.n"])


def test_runner_main_accepts_config_equals_path(yaml_path, monkeypatch):
    from vlprm.evaluation import runner

    seen = {}
    monkeypatch.setattr(runner, "run", lambda cfg: seen.setdefault("cfg", cfg))
    assert runner.main([f"--config={yaml_path}", "--policy.n", "2"]) == 0
    assert seen["cfg"].policy.n == 2 and seen["cfg"].benchmarks[0].name == "puzzles"


def test_wrong_types_are_errors_naming_the_key_not_silent_coercion(yaml_path):
    from vlprm.config import ConfigError

    cases = [(["--policy.n", "2.5"], "policy.n: expected an integer, got 2.5"),
             (["--policy.n", "true"], "policy.n: expected an integer, got True"),
             (["--seed", "four"], "seed: expected an integer, got 'four'"),
             (["--benchmarks", "[{name: mmmu, path: x, limit: many}]"],
              "benchmarks[0].limit: expected an integer, got 'many'"),
             (["--plots", "2"], "plots: expected true or false, got 2"),
             (["--policy.model", "[a, b]"], None)]  # a text field takes the text as given
    for override, message in cases:
        if message is None:
            assert load_config(EvalConfig, yaml_path, override).policy.model == "[a, b]"
            continue
        with pytest.raises(ConfigError) as e:
            load_config(EvalConfig, yaml_path, override)
        assert str(e.value) == message
    # Values that convert without loss still do.
    cfg = load_config(EvalConfig, yaml_path, ["--policy.n", "8.0", "--benchmarks", "[{name: mmmu, path: x, split: 2024}]"])
    assert cfg.policy.n == 8 and cfg.benchmarks[0].split == "2024"
