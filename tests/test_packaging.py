"""Packaging rules: the torch-free sdk, one-way dependencies, and editable + wheel installs."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["sdk", "train", "export", "cli"]  # each may import only from layers to its left


CLI_SHARED = {("cli",), ("cli", "options"), ("cli", "tables")}  # what a cli module may import of the cli (app.py: the commands too)
TRAIN_SURFACE = {  # what the cli may import of train: settings, backbones, progress bars, the training entry and its DDP teardown
    ("train",), ("train", "config"), ("train", "backbones"), ("train", "progress"), ("train", "trainer"), ("train", "distributed"),
}


def _is_module(parts: tuple[str, ...]) -> bool:
    """Whether sadh.PARTS is a module or package of this checkout (layer folders sit at the root)."""
    return ROOT.joinpath(*parts).with_suffix(".py").is_file() or (ROOT.joinpath(*parts) / "__init__.py").is_file()


def _imported_modules(path: Path) -> set[tuple[str, ...]]:
    """The sadh modules a source file imports (absolute `sadh.x.y` or relative `..x.y`), as name parts after sadh:
    `from ..train import distributed` is ("train", "distributed"), `from ..train.config import X` is ("train", "config")."""
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("sadh."):
                    continue
                parts = tuple(node.module.split(".")[1:])
            else:
                package = path.relative_to(ROOT).parent.parts
                parts = package[: len(package) - node.level + 1] + tuple(node.module.split(".") if node.module else ())
            names = [parts + (alias.name,) for alias in node.names]
            found |= {name for name in names if _is_module(name)}
            if not all(_is_module(name) for name in names):  # names of the module itself
                found.add(parts)
        elif isinstance(node, ast.Import):
            found |= {tuple(a.name.split(".")[1:]) for a in node.names if a.name.startswith("sadh.")}
    return {parts for parts in found if parts}


def _imported_layers(path: Path) -> set[str]:
    """The sadh layers a source file imports (absolute `sadh.x` or relative `..x`)."""
    return {parts[0] for parts in _imported_modules(path)} & set(LAYERS)


def _cli_import_violations() -> list[str]:
    """Imports that make a cli module more than parse -> one library call -> print: another command module (only app.py
    registers them, and __init__.py starts app.py), or train beyond TRAIN_SURFACE."""
    commands = {("cli", p.stem) for p in (ROOT / "cli").glob("*_cmd.py")}
    entry = {"app.py": commands, "__init__.py": {("cli", "app")}}
    violations = []
    for path in sorted((ROOT / "cli").rglob("*.py")):
        allowed = CLI_SHARED | entry.get(path.name, set())
        for module in sorted(_imported_modules(path)):
            if (module[0] == "cli" and module not in allowed) or (module[0] == "train" and module not in TRAIN_SURFACE):
                violations.append(f"{path.relative_to(ROOT)} imports sadh.{'.'.join(module)}")
    return violations


def test_cli_commands_import_no_other_command_and_only_trains_public_surface() -> None:
    violations = _cli_import_violations()
    assert not violations, violations


def _top_level_imports(path: Path) -> set[str]:
    """The top-level packages a source file imports absolutely."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_runtime_imports_no_cli_toolkit() -> None:
    """sadh.sdk reports through callbacks and `logging`, never through the CLI's typer / rich / tqdm."""
    toolkits = {"typer", "rich", "tqdm", "click"}
    violations = [f"{p.relative_to(ROOT)} imports {sorted(_top_level_imports(p) & toolkits)}"
                  for p in sorted((ROOT / "sdk").rglob("*.py")) if _top_level_imports(p) & toolkits]
    assert not violations, violations


def test_dependencies_point_one_way() -> None:
    violations = []
    for rank, layer in enumerate(LAYERS):
        allowed = set(LAYERS[: rank + 1])
        for path in sorted((ROOT / layer).rglob("*.py")):
            bad = _imported_layers(path) - allowed
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, violations


def test_sdk_never_imports_torch() -> None:
    code = (
        "import importlib, pkgutil, sys, sadh.sdk\n"
        "for m in pkgutil.walk_packages(sadh.sdk.__path__, 'sadh.sdk.'): importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.'))\n"
        "assert not bad, bad\n"
        "print(len([k for k in sys.modules if k.startswith('sadh.sdk')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 10  # really imported the sdk's modules


def test_cli_without_its_dependencies_names_the_extra() -> None:
    code = "import sys; sys.modules['typer'] = None; from sadh.cli import main; main()"  # as a runtime-only install
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr == "error: sadh-cli needs typer, which this install lacks: pip install 'sadh[export]'\n"


def test_editable_install_points_at_this_checkout() -> None:
    import sadh.cli
    import sadh.sdk

    assert Path(sadh.sdk.__file__).resolve() == ROOT / "sdk" / "__init__.py"
    assert Path(sadh.cli.__file__).resolve() == ROOT / "cli" / "__init__.py"


@pytest.mark.slow
@pytest.mark.torch  # imports every layer from the wheel
def test_wheel_install(tmp_path: Path) -> None:
    wheel_dir, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels = list(wheel_dir.glob("sadh-*.whl"))
    assert len(wheels) == 1
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheels[0])],
        check=True,
        capture_output=True,
    )
    code = (
        "import sadh.sdk, sadh.sdk.data, sadh.train, sadh.export, sadh.cli.app, sys\n"
        "print(sadh.sdk.__file__); print(sadh.cli.app.__file__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(target)) for line in out.stdout.split()), out.stdout
    assert (target / "sadh" / "train" / "backbones" / "__init__.py").is_file()


def test_lowest_pins_are_the_lower_bounds() -> None:
    """requirements/lowest.txt (scripts/test-lowest.sh) tests exactly the lower bounds users are promised."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = config["project"]
    runtime = project["dependencies"] + project["optional-dependencies"]["cpu"] + project["optional-dependencies"]["gpu"]
    bounds = {}
    for requirement in runtime:
        name, _, version = requirement.partition(">=")
        assert version, f"{requirement}: every runtime requirement has a lower bound"
        bounds[name] = version
    build = dict(r.partition(">=")[::2] for r in config["build-system"]["requires"])
    pins = dict(line.split("==") for line in (ROOT / "requirements" / "lowest.txt").read_text().splitlines() if "==" in line)
    assert {name: pins[name] for name in bounds} == bounds
    assert pins["setuptools"].startswith(build["setuptools"])
    assert project["requires-python"] == ">=3.10"  # the Python scripts/test-lowest.sh runs
