"""One import root: the suite is ``menagerie.*`` and lives beside any other package's top-level names.

Fresh processes run from a folder outside the checkout with no ``PYTHONPATH``, as a user's
shell would, so that what they import is what the installation resolves.
"""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.harness.test_cli import shell_environment

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("menagerie")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=shell_environment(), timeout=300
    )


BIAS_GELU = (
    "import torch; from menagerie.kernels.elementwise import bias_gelu, bias_gelu_reference; "
    "x, bias = torch.randn(5, 33), torch.randn(33); "
    "assert torch.allclose(bias_gelu(x, bias), bias_gelu_reference(x, bias), atol=1e-5); print('ran')"
)

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter switch acts only without CUDA")


@needs_cpu_only
def test_kernels_before_triton_runs_interpreted(tmp_path):
    done = python("import menagerie.kernels, triton; " + BIAS_GELU, tmp_path)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr


@needs_cpu_only
def test_triton_before_kernels_is_an_error_that_names_the_fix(tmp_path):
    done = python("import triton; " + BIAS_GELU, tmp_path)
    assert done.returncode != 0
    assert "triton was imported before menagerie.kernels" in done.stderr and "TRITON_INTERPRET=1" in done.stderr


def test_every_family_loads_through_its_entry_point(tmp_path):
    done = python("from menagerie.harness import registry; print(' '.join(sorted(registry.load_all())))", tmp_path)
    assert done.returncode == 0, done.stderr
    families = {name.split(".")[0] for name in done.stdout.split()}
    assert families == {"attention", "elementwise", "resnet", "sae", "ssm"}


def test_the_suite_installs_no_generic_top_level_name(tmp_path):
    code = (
        "import importlib.util, json; "
        "print(json.dumps({name: (spec.origin if (spec := importlib.util.find_spec(name)) else None) "
        "for name in ('harness', 'kernels', 'models', 'benchmarks')}))"
    )
    done = python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    for name, origin in json.loads(done.stdout).items():
        assert origin is None or not Path(origin).resolve().is_relative_to(ROOT / name), (
            f"`import {name}` finds the suite's {origin}"
        )


@pytest.mark.skipif(
    not any(dist.metadata["Name"] == "kernels" for dist in importlib.metadata.distributions()),
    reason="HuggingFace's kernels distribution is not installed (transformers>=5.25 requires it)",
)
def test_huggingface_kernels_and_the_suite_import_side_by_side(tmp_path):
    done = python(
        "import kernels, menagerie.kernels, transformers; "
        "print(kernels.__file__); print(menagerie.kernels.__file__); print(transformers.__version__)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    theirs, ours, transformers_version = done.stdout.split()
    assert Path(theirs).parent.name == "kernels" and not Path(theirs).resolve().is_relative_to(ROOT / "kernels")
    assert Path(ours).resolve() == ROOT / "kernels" / "__init__.py" or "site-packages" in ours
    assert theirs != ours and transformers_version


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason=f"no installed console script at {CONSOLE_SCRIPT}")
def test_the_sink_study_runs_beside_huggingface_kernels(tmp_path):
    # transformers (which may import HuggingFace's kernels) and the suite's kernels in one process.
    done = subprocess.run(
        [
            str(CONSOLE_SCRIPT),
            "study",
            "sinks",
            "--texts",
            "2",
            "--corpus",
            "4",
            "--windows",
            "2",
            "--sinks",
            "cls",
            "--dense-layers",
            "0",
            "--boots",
            "50",
            "--max-tokens",
            "32",
            "--out",
            str(tmp_path / "study"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=shell_environment(),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "study" / "sinks.json").is_file()


@pytest.fixture(scope="module")
def wheel_environment(tmp_path_factory) -> Path:
    """A fresh environment with the suite installed from a built wheel (not an editable install).

    It sees the test environment's packages (torch, triton, ...) through a ``.pth`` line after its own
    site-packages, so only the suite itself, and what a test installs there, comes from its own folder."""
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(folder / "wheels"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (folder / "wheels").glob("menagerie-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    (purelib(venv / "bin" / "python") / "test-environment.pth").write_text(f"{purelib(Path(sys.executable))}\n")
    install(venv, str(wheel))
    return venv


def purelib(python: Path) -> Path:
    done = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def install(venv: Path, *what: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            *what,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def in_environment(venv: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**shell_environment(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=600,
    )


TINY_RUN = (
    "--size",
    "tiny",
    "--mode",
    "fwd",
    "--budget",
    "0.01",
    "--warmup",
    "0.01",
    "--seeds",
    "1",
    "--min-reps",
    "2",
    "--max-reps",
    "2",
)


def test_a_built_wheel_runs_from_outside_the_checkout(wheel_environment, tmp_path):
    site_packages = purelib(wheel_environment / "bin" / "python")
    assert (site_packages / "menagerie" / "harness" / "result_schema.json").is_file()
    where = in_environment(
        wheel_environment, "python", "-c", "import menagerie.harness as h; print(h.__file__)", cwd=tmp_path
    )
    assert where.stdout.strip().startswith(str(site_packages)), where.stdout + where.stderr
    listed = in_environment(wheel_environment, "menagerie", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "attention.sliding_window" in listed.stdout, listed.stdout + listed.stderr
    ran = in_environment(
        wheel_environment,
        "menagerie",
        "run",
        "elementwise.bias_gelu",
        "--case",
        "64x257",
        *TINY_RUN,
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1


TOY_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "menagerie-toy-family"
version = "0.1"

[project.entry-points."menagerie.benchmarks"]
toy = "toy_family"

[tool.setuptools]
py-modules = ["toy_family"]
"""

TOY_FAMILY = '''"""A benchmark family from another package: ``toy.scale``, y = 2x, with a reference and one variant."""
import torch

from menagerie.harness.registry import Benchmark, Case, Cost, Impl, Tolerance, register


def make_inputs(case, dtype, device, seed):
    generator = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(case.params["n"], generator=generator).to(device, dtype)}


register(Benchmark(
    name="toy.scale", description="y = 2x over n floats",
    cases={
        "tiny": [Case("n1k", {"n": 1000})],
        "small": [Case("n1m", {"n": 2**20})],
        "full": [Case("n16m", {"n": 2**24})],
    },
    make_inputs=make_inputs,
    reference=Impl("multiply", lambda x: x * 2, role="reference"),
    variants=[Impl("add", lambda x: x + x)],
    modes=("fwd",),
    cost=lambda case, mode, dtype: Cost(flops=case.params["n"], bytes=2 * case.params["n"] * dtype.itemsize),
    tolerances={torch.float32: Tolerance(atol=1e-6, rtol=1e-6)},
))
'''


def test_a_family_from_another_package_registers_by_installing(wheel_environment, tmp_path):
    """docs/writing-a-benchmark.md's "Adding a benchmark family from your own package", worked: install, list, run."""
    package = tmp_path / "toy-family"
    package.mkdir()
    (package / "pyproject.toml").write_text(TOY_PYPROJECT)
    (package / "toy_family.py").write_text(TOY_FAMILY)
    install(wheel_environment, str(package))
    listed = in_environment(wheel_environment, "menagerie", "list", "toy", cwd=tmp_path)
    assert listed.returncode == 0 and "toy.scale" in listed.stdout, listed.stdout + listed.stderr
    ran = in_environment(
        wheel_environment, "menagerie", "run", "toy", *TINY_RUN, "--out", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [path] = (tmp_path / "runs").glob("*.json")
    import json

    rows = {row["impl"]: row["status"] for row in json.loads(path.read_text())["rows"]}
    assert rows == {"multiply": "ok", "add": "ok"}
