"""The CI recipes in ``examples/ci/``, checked so that they cannot drift from the CLI or from the CI systems.

- Each file validates against its CI system's published schema, through check-jsonschema's built-in (vendored,
  offline) ``vendor.github-workflows`` and ``vendor.gitlab-ci`` schemas; planted mistakes fail the same check.
- The shell of the GPU recipes runs here, on the CPU at the tiny preset (TINY). GitHub: the main branch's path (the
  suite with replicates, kept as the baseline), then the pull request's against that baseline (run, gate, site);
  the last step fails exactly when the gate did. GitLab: the merge request's script, for real, against the same
  baseline record; the default branch's script, whose one `menagerie run` is the GitHub one but for --out, through
  a stand-in `menagerie` that only parses (each real run costs seconds of imports per process).
- What needs the runner is not run: in the GitHub workflows, the ``uses:`` steps and the steps whose name starts
  with "CI only:" (install, ``nvidia-smi``); in the GitLab pipeline, ``before_script`` and ``after_script`` (install,
  ``nvidia-smi``, GitLab's API); their API calls run separately against a stand-in for the API on 127.0.0.1.
- The SLURM workflow's steps run with the stand-in `menagerie`, which parses each command with the CLI's own parser
  and submits nothing (tests/harness/test_cluster.py runs submit and collect on a real SLURM cluster).
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "ci"
BIN = Path(sys.executable).parent
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

CI_ONLY = "CI only:"  # the name prefix of a GitHub step that needs the runner (a GPU, the network, an install)
# The recipes' tunables, turned down to a CPU run of a few seconds: one benchmark, two rows, two replicates.
TINY = {
    "SIZE": "tiny",
    "REPEAT": "2",
    "SUITE": "elementwise.bias_gelu",
    "DEVICE": "cpu",
    "RUN_OPTIONS": "--impl torch --mode fwd --budget 0.05 --warmup 0.01 --seeds 1",
}
GATE_FILES = ("gate.md", "gate.xml", "gate.json")


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def base_env(tmp_path: Path, recipe_env: dict, **more: str) -> dict[str, str]:
    """The recipe's own variables with TINY over them (each of which must be one of the recipe's tunables), the
    venv's commands first on PATH, and pytest's variables left out."""
    assert set(TINY) <= set(recipe_env), f"not tunables of the recipe: {set(TINY) - set(recipe_env)}"
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")},
        **{name: str(value) for name, value in recipe_env.items()},
        **TINY,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MENAGERIE_CACHE_DIR": os.environ.get("MENAGERIE_CACHE_DIR", str(tmp_path / "cache")),
        **more,
    }


def bash(script: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``script`` as GitHub's ``shell: bash`` and GitLab's bash runner run it: -e and pipefail."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def output(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"


# --- the published schemas --------------------------------------------------------------------------------------


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed beside {sys.executable} (the test extra has it)")
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# check-jsonschema has no documented Python API: its console script, from this venv.
SCHEMAS = {
    "github-gpu.yml": "vendor.github-workflows",
    "slurm-gpu.yml": "vendor.github-workflows",
    "gitlab-gpu.yml": "vendor.gitlab-ci",
}


@pytest.mark.parametrize("schema", sorted(set(SCHEMAS.values())))
def test_recipes_match_their_published_schemas(schema):
    files = [RECIPES / name for name, wanted in sorted(SCHEMAS.items()) if wanted == schema]
    done = check_jsonschema(schema, *files)
    assert done.returncode == 0, output(done)
    assert "ok -- validation done" in done.stdout


def test_schema_check_fails_on_planted_mistakes(tmp_path):
    def planted(name: str, change=None) -> dict:
        # a deep copy, with GitHub's `on:` written back as the key it was (PyYAML reads `on` as True)
        data = json.loads(json.dumps({("on" if key is True else key): value for key, value in load(name).items()}))
        if change:
            change(data)
        return data

    cases = {
        # the files as loaded and written back pass, so that each failure below is the planted mistake's
        "github-as-is.yml": (True, planted("github-gpu.yml")),
        "gitlab-as-is.yml": (True, planted("gitlab-gpu.yml")),
        # a step that both uses an action and runs a command
        "uses-and-run.yml": (
            False,
            planted("github-gpu.yml", lambda w: w["jobs"]["gate"]["steps"][0].update(run="ls")),
        ),
        "no-runs-on.yml": (False, planted("github-gpu.yml", lambda w: w["jobs"]["baseline"].pop("runs-on"))),
        "bad-when.yml": (False, planted("gitlab-gpu.yml", lambda p: p["menagerie-gate"].update(when="sometimes"))),
        "bad-expiry.yml": (
            False,
            planted("gitlab-gpu.yml", lambda p: p["menagerie-baseline"]["artifacts"].update(expire_in=["90 days"])),
        ),
    }
    for name, (valid, data) in cases.items():
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        schema = "vendor.gitlab-ci" if "menagerie-gate" in data else "vendor.github-workflows"
        done = check_jsonschema(schema, path)
        assert done.returncode == (0 if valid else 1), f"{name}: {output(done)}"
        assert valid or "Schema validation errors" in done.stdout + done.stderr, f"{name}: {output(done)}"


# --- GitHub Actions -----------------------------------------------------------------------------------------------


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 (PyYAML) reads the key `on` as True


def local_steps(job: dict) -> list[dict]:
    """The steps of a job that run here: not an action, not a step marked CI only."""
    return [step for step in job["steps"] if "uses" not in step and not step.get("name", "").startswith(CI_ONLY)]


def run_github_steps(steps: list[dict], env: dict[str, str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Runs ``steps`` in order as a runner does, stopping at the first that fails: each step's lines under bash -e
    with pipefail, and what a step appends to $GITHUB_ENV set for the steps after it. ``env`` is updated."""
    results = []
    for step in steps:
        assert "${{" not in step["run"], f"{step.get('name')}: an expression in `run:` that a shell cannot run"
        assert not step.get("env") and not step.get("working-directory"), step.get("name")
        github_env = cwd / ".github-env"
        github_env.write_text("")
        done = bash(step["run"], {**env, "GITHUB_ENV": str(github_env)}, cwd)
        for line in github_env.read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
        results.append(done)
        if done.returncode:
            break
    return results


def github_env(tmp_path: Path, workflow: dict, work: Path) -> dict[str, str]:
    return base_env(
        tmp_path,
        workflow["env"],
        DEVICE_KEY="cpu",  # what the "CI only" step asks nvidia-smi for
        GITHUB_ACTIONS="true",
        GITHUB_OUTPUT=str(work / ".github-output"),
        GITHUB_STEP_SUMMARY=str(work / ".github-summary.md"),
    )


def test_github_workflow_layout():
    workflow = load("github-gpu.yml")
    on = triggers(workflow)
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    assert workflow["defaults"]["run"]["shell"] == "bash"  # what run_github_steps runs
    baseline, gate = workflow["jobs"]["baseline"], workflow["jobs"]["gate"]
    assert "!= 'pull_request'" in baseline["if"] and "== 'pull_request'" in gate["if"]
    for job in (baseline, gate):
        assert job["runs-on"] == ["self-hosted", "gpu"]
        assert any(step.get("name", "").startswith(CI_ONLY) and "nvidia-smi" in step["run"] for step in job["steps"])
        for step in job["steps"]:  # the shell that only the runner runs needs no expression either
            assert "${{" not in step.get("run", ""), step.get("name")
    uses = {step["uses"].split("@")[0]: step for step in baseline["steps"] + gate["steps"] if "uses" in step}
    save, restore = uses["actions/cache/save"], uses["actions/cache/restore"]
    assert "${{ env.DEVICE_KEY }}" in save["with"]["key"] and save["with"]["path"] == "baseline/"
    assert restore["with"]["restore-keys"].strip() == "menagerie-baseline-${{ env.DEVICE_KEY }}-"
    assert save["with"]["key"].startswith(restore["with"]["restore-keys"].strip())
    assert restore["with"]["fail-on-cache-miss"] is True
    assert uses["marocchino/sticky-pull-request-comment"]["with"]["path"] == "gate.md"
    uploaded = " ".join(step["with"]["path"] for step in gate["steps"] if "upload-artifact" in step.get("uses", ""))
    assert {"gate.xml", "site/", "new/", "gate.json"} <= set(uploaded.split())
    assert "GATE_STATUS" in gate["steps"][-1]["run"] and "exit" in gate["steps"][-1]["run"]


@pytest.fixture(scope="module")
def github_main(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The GitHub workflow's main-branch path, run here: its workspace, with the baseline record, and its env.
    The GitLab pipeline's merge-request job gates against this record too (a CPU run costs seconds of imports)."""
    tmp_path = tmp_path_factory.mktemp("github")
    workflow = load("github-gpu.yml")
    work = tmp_path / "workspace"
    work.mkdir()
    env = github_env(tmp_path, workflow, work)
    done = run_github_steps(local_steps(workflow["jobs"]["baseline"]), env, work)
    assert all(step.returncode == 0 for step in done), output(done[-1])
    return work, env


def test_github_workflow_runs_on_the_cpu(github_main):
    workflow = load("github-gpu.yml")
    work, env = github_main

    # push to main: the suite with replicates, kept as the baseline
    records = list((work / "baseline").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["config"]["size"] == "tiny" and record["config"]["device"] == "cpu"
    assert all(len(row["replicate_medians_s"]) == 2 for row in record["rows"] if row["status"] == "ok")

    # pull request: against that baseline; every step passes but the last, which fails on the gate's exit code
    *steps, fail = local_steps(workflow["jobs"]["gate"])
    done = run_github_steps(steps, env, work)
    assert len(done) == len(steps) and all(step.returncode == 0 for step in done), output(done[-1])
    for name in GATE_FILES:
        assert (work / name).is_file(), name
    assert (work / "site" / "index.html").is_file()
    verdict = json.loads((work / "gate.json").read_text())
    status = 0 if verdict["passed"] else 1
    assert env["GATE_STATUS"] == str(status)
    assert f"status={status}" in (work / ".github-output").read_text()
    assert (work / ".github-summary.md").read_text() == (work / "gate.md").read_text()  # compare fills the summary
    assert "menagerie gate" in (work / "gate.md").read_text()
    last = bash(fail["run"], env, work)
    assert last.returncode == status, output(last)

    # the last step alone, with a planted status
    for planted in (0, 1, 2):
        last = bash(fail["run"], {**env, "GATE_STATUS": str(planted)}, work)
        assert last.returncode == planted, output(last)
        assert ("::error" in last.stdout) == bool(planted)
    unset = {name: value for name, value in env.items() if name != "GATE_STATUS"}
    assert bash(fail["run"], unset, work).returncode != 0  # a gate that did not run does not pass


# --- a stand-in `menagerie` that only parses ----------------------------------------------------------------------

STAND_IN = '''#!{python}
"""A stand-in `menagerie`: each command checked by the CLI's own parser (exit 2 on an option it does not have) and
logged; nothing runs or is submitted. The first `collect --wait` of a first replicate exits 1, as for a preempted
shard, so that the SLURM recipe's resubmission runs too."""
import json, os, sys
from pathlib import Path

from menagerie.harness.cli import build_parser

argv = sys.argv[1:]
args = build_parser(argv).parse_args(argv)
log = Path(os.environ["STAND_IN_LOG"])
seen = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
if args.command == "submit":
    from menagerie.harness.cli.cluster import OWNED

    owned = [argument for argument in args.arguments if argument.split("=")[0] in OWNED]
    if owned:
        sys.exit(f"submit sets {{owned[0]}} itself")
    if not any(entry[0] == "submit" and entry[entry.index("run"):] == argv[argv.index("run"):] for entry in seen):
        build_parser(["run"]).parse_args(["run", *args.arguments])  # torch: once per distinct `run` arguments
with log.open("a") as file:
    file.write(json.dumps(argv) + "\\n")
if args.command == "collect" and args.wait and args.job.endswith("-1") and argv not in seen:
    sys.exit(1)
'''


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """A folder holding the stand-in `menagerie`, to put first on PATH; it logs to $STAND_IN_LOG."""
    folder = tmp_path_factory.mktemp("stand-in")
    (folder / "menagerie").write_text(STAND_IN.format(python=sys.executable))
    (folder / "menagerie").chmod(0o755)
    return folder


# --- GitLab CI ----------------------------------------------------------------------------------------------------


def test_gitlab_pipeline_layout():
    pipeline = load("gitlab-gpu.yml")
    template, baseline, gate = pipeline[".menagerie"], pipeline["menagerie-baseline"], pipeline["menagerie-gate"]
    assert template["tags"] == ["gpu"] and baseline["extends"] == gate["extends"] == ".menagerie"
    assert "nvidia-smi" in " ".join(template["before_script"])
    assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in baseline["rules"][0]["if"]
    assert gate["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert baseline["artifacts"]["paths"] == ["baseline/"]
    assert pipeline["variables"]["BASELINE_JOB"] == "menagerie-baseline"
    assert gate["artifacts"]["reports"]["junit"] == "gate.xml" and gate["artifacts"]["when"] == "always"
    assert {"gate.md", "gate.xml", "gate.json", "new/", "site/"} <= set(gate["artifacts"]["paths"])
    assert gate["script"][-1] == 'exit "$GATE_STATUS"'


def test_gitlab_pipeline_runs_on_the_cpu(tmp_path, github_main, stand_in):
    pipeline = load("gitlab-gpu.yml")
    work = tmp_path / "workspace"
    work.mkdir()
    env = base_env(tmp_path, pipeline["variables"], DEVICE_KEY="cpu", CI_DEFAULT_BRANCH="main")

    # the default branch's job: its `menagerie run` checked by the CLI's parser, and the GitHub workflow's
    # baseline (the same command but for --out, run by github_main) in the place it writes
    log = tmp_path / "commands.jsonl"
    checked = {**env, "PATH": f"{stand_in}{os.pathsep}{env['PATH']}", "STAND_IN_LOG": str(log)}
    done = bash("\n".join(pipeline["menagerie-baseline"]["script"]), checked, work)
    assert done.returncode == 0, output(done)
    (command,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert command == ["run", TINY["SUITE"], "--size", "tiny", "--device", "cpu", "--repeat", "2"] + [
        *shlex.split(TINY["RUN_OPTIONS"]),
        "--out",
        "baseline/cpu/",
    ]
    github_steps = load("github-gpu.yml")["jobs"]["baseline"]["steps"]
    github_run = next(
        line for step in github_steps for line in step.get("run", "").splitlines() if "menagerie run" in line
    )
    gitlab_run = next(line for line in pipeline["menagerie-baseline"]["script"] if "menagerie run" in line)
    assert github_run.split("--out")[0].strip() == gitlab_run.split("--out")[0].strip()
    (work / "baseline" / "cpu").mkdir(parents=True)
    for record in (github_main[0] / "baseline").glob("*.json"):
        shutil.copy(record, work / "baseline" / "cpu" / record.name)

    # the merge request's job fails exactly when the gate does, after the gate's files and the site are written
    script = pipeline["menagerie-gate"]["script"]
    done = bash("\n".join(script), env, work)
    for name in GATE_FILES:
        assert (work / name).is_file(), f"{name}: {output(done)}"
    assert (work / "site" / "index.html").is_file(), output(done)
    verdict = json.loads((work / "gate.json").read_text())
    assert done.returncode == (0 if verdict["passed"] else 1), output(done)
    for planted in (0, 1):
        assert bash(script[-1], {**env, "GATE_STATUS": str(planted)}, work).returncode == planted

    # without a baseline of this GPU, the job fails before it runs anything
    done = bash("\n".join(script), {**env, "DEVICE_KEY": "another-gpu"}, work)
    assert done.returncode == 1 and "no baseline of another-gpu" in done.stdout, output(done)


class FakeGitLab(http.server.BaseHTTPRequestHandler):
    """The three calls of the recipe's API steps: an artifacts archive, and a merge request's notes."""

    archive = b""
    notes: list[dict] = []
    requests: list[tuple[str, str, str]] = []

    def _reply(self, body: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.requests.append(("GET", self.path, self.headers.get("PRIVATE-TOKEN") or self.headers.get("JOB-TOKEN")))
        if "/jobs/artifacts/main/download?job=menagerie-baseline" in self.path:
            self._reply(self.archive, "application/zip")
        else:
            self._reply(json.dumps(self.notes).encode())

    def _write(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.command, self.path, self.headers.get("PRIVATE-TOKEN")))
        if self.command == "POST":
            self.notes.append({"id": len(self.notes) + 1, "body": body["body"]})
        else:
            note = next(note for note in self.notes if self.path.endswith(f"/notes/{note['id']}"))
            note["body"] = body["body"]
        self._reply(b"{}")

    do_POST = do_PUT = _write

    def log_message(self, *args):
        pass


def test_gitlab_api_steps_against_a_stand_in(tmp_path):
    """The baseline's download (before_script) and the sticky note (after_script), against a local stand-in."""
    if not shutil.which("curl"):
        pytest.skip("the recipe downloads the baseline with curl, which is not installed here")
    pipeline = load("gitlab-gpu.yml")
    gate = pipeline["menagerie-gate"]
    download = [line for line in gate["before_script"] if "jobs/artifacts" in line]
    assert len(download) == 1
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("baseline/cpu/run.json", "{}")
    FakeGitLab.archive, FakeGitLab.notes, FakeGitLab.requests = archive.getvalue(), [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tmp_path / "workspace"
    work.mkdir()
    ci = {
        **pipeline["variables"],
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # python3: the venv's
        "CI_API_V4_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v4",
        "CI_PROJECT_ID": "7",
        "CI_MERGE_REQUEST_IID": "3",
        "CI_DEFAULT_BRANCH": "main",
        "CI_JOB_TOKEN": "job-token",
        "no_proxy": "127.0.0.1",
        "NO_PROXY": "127.0.0.1",
    }
    try:
        (work / "baseline" / "stale").mkdir(parents=True)
        for token, sent in ((None, "job-token"), ("project-token", "project-token")):
            env = {**ci, **({"MENAGERIE_API_TOKEN": token} if token else {})}
            done = bash(download[0], env, work, timeout=60)
            assert done.returncode == 0, output(done)
            assert FakeGitLab.requests[-1] == (
                "GET",
                "/api/v4/projects/7/jobs/artifacts/main/download?job=menagerie-baseline",
                sent,
            )
            assert [path.name for path in (work / "baseline").iterdir()] == ["cpu"]  # the old baseline is gone
        (work / "gate.md").write_text("### menagerie gate: failed\n\nfirst\n")
        env = {**ci, "MENAGERIE_API_TOKEN": "project-token"}
        after = "\n".join(gate["after_script"])
        assert bash(after, env, work, timeout=60).returncode == 0
        (work / "gate.md").write_text("### menagerie gate: passed\n\nsecond\n")
        assert bash(after, env, work, timeout=60).returncode == 0
        assert len(FakeGitLab.notes) == 1 and FakeGitLab.notes[0]["body"].endswith("passed\n\nsecond\n")
        assert [method for method, _, _ in FakeGitLab.requests[2:]] == ["GET", "POST", "GET", "PUT"]
        assert {token for _, _, token in FakeGitLab.requests[2:]} == {"project-token"}
        # without a token, or without a gate, no note and no failure
        done = bash(after, {name: value for name, value in env.items() if name != "MENAGERIE_API_TOKEN"}, work)
        assert done.returncode == 0 and "no note posted" in done.stdout
        assert len(FakeGitLab.requests) == 6
    finally:
        server.shutdown()
        server.server_close()


# --- the SLURM variant ----------------------------------------------------------------------------------------------


def test_slurm_workflow_commands_match_the_cli(tmp_path, stand_in):
    workflow = load("slurm-gpu.yml")
    on = triggers(workflow)
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    baseline, gate = workflow["jobs"]["baseline"], workflow["jobs"]["gate"]
    assert baseline["runs-on"] == gate["runs-on"] == ["self-hosted", "slurm"]
    work = tmp_path / "workspace"
    work.mkdir()
    log = tmp_path / "commands.jsonl"
    env = github_env(tmp_path, workflow, work)
    env.update(PATH=f"{stand_in}{os.pathsep}{env['PATH']}", STAND_IN_LOG=str(log))
    for job in (baseline, gate):
        done = run_github_steps(local_steps(job), env, work)
        assert all(step.returncode == 0 for step in done), output(done[-1])
        assert len(done) == len(local_steps(job))
    commands = [json.loads(line) for line in log.read_text().splitlines()]
    submitted = [argv for argv in commands if argv[0] == "submit"]
    assert [argv[argv.index("--folder") + 1] for argv in submitted] == [
        "slurm/baseline-1",
        "slurm/baseline-2",
        "slurm/new-1",
        "slurm/new-2",
    ]
    assert all(argv[argv.index("--shards") + 1] == workflow["env"]["SHARDS"] for argv in submitted)
    assert submitted[0][submitted[0].index("run") :] == ["run", "elementwise.bias_gelu", "--size", "tiny"] + [
        "--device",
        "cpu",
        *shlex.split(TINY["RUN_OPTIONS"]),
    ]
    collected = [(argv[1], "--resubmit-failed" in argv, argv[-1]) for argv in commands if argv[0] == "collect"]
    assert collected == [
        ("slurm/baseline-1", False, "baseline/"),
        ("slurm/baseline-1", True, "--resubmit-failed"),
        ("slurm/baseline-1", False, "baseline/"),
        ("slurm/baseline-2", False, "baseline/"),
        ("slurm/new-1", False, "new/"),
        ("slurm/new-1", True, "--resubmit-failed"),
        ("slurm/new-1", False, "new/"),
        ("slurm/new-2", False, "new/"),
    ]
    assert [argv[0] for argv in commands][-2:] == ["compare", "site"]
    assert env["GATE_STATUS"] == "0"  # the stand-in's compare passed
