"""The package's import layers, and that library code leaves torch's global generator alone."""

import ast
from pathlib import Path

import pytest
import torch

from metamap import _layers
from metamap.seeding import seeded

SOURCE = Path(_layers.__file__).parent


def test_the_package_keeps_its_layers():
    assert _layers.violations() == []


def test_every_module_has_a_layer():
    for path in SOURCE.rglob("*.py"):
        _layers.layer_of(_layers.module_name(path))  # raises for a package missing from LAYERS


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_each_rule_is_caught(tmp_path):
    root = _package(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/episode.py": "from metamap.training.loop import meta_train\n",
            "training/__init__.py": "",
            "training/loop.py": "from ..tasks import episode\n\nx = episode._hidden\n",
            "geo/__init__.py": "",
            "geo/io.py": "from metamap.traffic.io import load_traffic\n",
            "traffic/__init__.py": "",
            "traffic/io.py": "from metamap.traffic.features import _per_node\n",
            "traffic/features.py": "",
            "traffic/commands.py": "from metamap.cli import main\nfrom metamap import __version__\n",
            "cli.py": "from metamap.geo import io\n",
        },
    )
    assert sorted(_layers.violations(root)) == [
        "metamap.geo.io:1: domain geo imports domain traffic (metamap.traffic.io.load_traffic)",
        "metamap.tasks.episode:1: imports metamap.training.loop.meta_train from a higher layer",
        "metamap.traffic.io:1: uses private metamap.traffic.features._per_node of another module",
        "metamap.training.loop:3: uses private metamap.tasks.episode._hidden of another module",
    ]


def test_a_package_in_no_layer_is_refused():
    with pytest.raises(ValueError, match="'newthing' is in no layer"):
        _layers.layer_of("metamap.newthing.core")


def test_the_command_prints_nothing_and_exits_0(capsys):
    assert _layers.main() == 0
    assert capsys.readouterr().out == ""


# Calls that seed torch's global generators: only metamap.seeding makes them.
GLOBAL_SEEDING = {"manual_seed", "seed", "cuda.manual_seed", "cuda.manual_seed_all", "cuda.seed", "cuda.seed_all"}
MAY_SEED = {"seeding.py"}


def _global_seeding_calls(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            dotted = ast.unparse(node.func)
            if dotted.startswith("torch.") and dotted.removeprefix("torch.") in GLOBAL_SEEDING:
                lines.append(node.lineno)
    return lines


def test_library_code_does_not_seed_torch_globally():
    found = {
        str(path.relative_to(SOURCE)): _global_seeding_calls(path)
        for path in SOURCE.rglob("*.py")
        if path.relative_to(SOURCE).as_posix() not in MAY_SEED
    }
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_the_seeding_check_sees_a_global_seed(tmp_path):
    path = tmp_path / "module.py"
    path.write_text(
        "import torch\n\ntorch.manual_seed(0)\ntorch.Generator().manual_seed(1)\ntorch.cuda.manual_seed_all(2)\n"
    )
    assert _global_seeding_calls(path) == [3, 5]


def test_seeded_draws_what_a_global_seed_draws_and_restores_the_state():
    before = torch.random.get_rng_state()
    with seeded(7):
        inside = torch.rand(5)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(5))


def _seeded_builds():
    from metamap.energy.learned import make_network
    from metamap.physics.experiment import new_model
    from metamap.physics.systems import get_system
    from metamap.recipes import build_learner
    from metamap.traffic.experiment import ExperimentConfig, build_model

    run = {"family": {"name": "sinusoid"}, "learner": {"name": "maml"}, "seed": 3}
    return {
        "energy.make_network": lambda: make_network(4, 2, (8,), seed=3),
        "physics.new_model": lambda: new_model(get_system("oscillator"), 3),
        "recipes.build_learner": lambda: build_learner(run).model,
        "traffic.build_model": lambda: build_model(6, ExperimentConfig(seed=3)),
    }


@pytest.mark.parametrize("name", sorted(_seeded_builds()))
def test_a_seeded_build_leaves_the_global_generator_as_it_was(name):
    build = _seeded_builds()[name]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = build()
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)
    second = build()  # same seed, same weights, whatever the global state
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_a_seeded_build_draws_the_weights_a_global_seed_drew():
    from metamap.energy.learned import make_network
    from metamap.nn import MLP

    torch.manual_seed(3)
    expected = MLP(4, [8], 2)
    for a, b in zip(make_network(4, 2, (8,), seed=3).parameters(), expected.parameters()):
        assert torch.equal(a, b)
