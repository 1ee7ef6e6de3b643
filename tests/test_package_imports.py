"""The two ways the kernels can be imported wrongly, each named at import time (fresh processes).

- Without a GPU, ``kernels`` switches Triton's interpreter on; triton imported before it
  has built its own jitted functions for a GPU, which an interpreted kernel cannot call.
- A top-level ``kernels`` from another distribution (HuggingFace's) first on the path
  means the switch never runs; the benchmarks refuse it by path.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.harness.test_cli import shell_environment

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, path: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**shell_environment(), "PYTHONPATH": os.pathsep.join(map(str, path))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=environment,
                          timeout=300)


BIAS_GELU = ("import torch; from kernels.elementwise import bias_gelu, bias_gelu_reference; "
             "x, bias = torch.randn(5, 33), torch.randn(33); "
             "assert torch.allclose(bias_gelu(x, bias), bias_gelu_reference(x, bias), atol=1e-5); print('ran')")

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter switch acts only without CUDA")


@needs_cpu_only
def test_kernels_before_triton_runs_interpreted(tmp_path):
    done = python("import kernels, triton; " + BIAS_GELU, [ROOT], tmp_path)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr


@needs_cpu_only
def test_triton_before_kernels_is_an_error_that_names_the_fix(tmp_path):
    done = python("import triton; " + BIAS_GELU, [ROOT], tmp_path)
    assert done.returncode != 0
    assert "triton was imported before kernels" in done.stderr and "TRITON_INTERPRET=1" in done.stderr


def test_every_benchmark_module_imports_after_the_switch(tmp_path):
    # The registry imports benchmarks/ first, whose package imports kernels before any family module does.
    done = python("from harness import registry; print('attention.sliding_window' in registry.load_all())",
                  [ROOT], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_a_foreign_kernels_package_first_on_the_path_is_refused_by_name(tmp_path):
    foreign = tmp_path / "elsewhere" / "kernels"
    foreign.mkdir(parents=True)
    (foreign / "__init__.py").write_text('"""Another distribution\'s top-level kernels package."""\n')
    done = subprocess.run([sys.executable, "-m", "harness.cli", "list"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(foreign.parent), str(ROOT)]),
                               "COLUMNS": "1000"},  # one line: rich would break the path
                          timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(foreign / "__init__.py") in done.stderr
    assert "not this suite's" in done.stderr and "pip uninstall kernels" in done.stderr
