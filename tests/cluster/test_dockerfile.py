"""The Dockerfile agrees with pyproject.toml (Docker itself cannot run on CI): the CUDA build of the
pinned torch, every version it names equal to pyproject's pin, the project's pins read from
pyproject.toml itself, a non-root user, and a .dockerignore that keeps the venv and git out."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
# Anything spelled like a pip pin: name, optional [extras], ==version.
PIN = re.compile(r"(?<![\w.-])([A-Za-z][A-Za-z0-9._-]*(?:\[[A-Za-z0-9_,.-]+\])?)==([0-9][A-Za-z0-9.+!-]*)")


def pyproject_pins() -> dict[str, str]:
    """Exact pins of pyproject.toml (dependencies and extras), by canonical name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for text in requirements:
        requirement = Requirement(text)
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            pins[canonicalize_name(requirement.name)] = exact[0]
    return pins


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def runs() -> list[str]:
    return [args for keyword, args in instructions() if keyword == "RUN"]


def test_torch_is_the_pinned_version_from_the_cuda_index():
    torch_pin = pyproject_pins()["torch"]
    torch_installs = [run for run in runs() if re.search(r'pip install "?torch==', run)]
    assert len(torch_installs) == 1, torch_installs
    install = torch_installs[0]
    assert f"torch=={torch_pin}" in install
    index = re.search(r"--index-url\s+\"?(https://download\.pytorch\.org/whl/\S+?)\"?(\s|$)", install)
    assert index, "torch must come from the PyTorch CUDA index"
    cuda = index.group(1).rsplit("/", 1)[-1]
    if cuda.startswith("${"):  # a build argument: its default names the CUDA variant
        name = cuda.strip("${}")
        cuda = next(
            args.split("=", 1)[1]
            for keyword, args in instructions()
            if keyword == "ARG" and args.startswith(f"{name}=")
        )
    assert re.fullmatch(r"cu1[0-9]{2}", cuda), f"not a CUDA build of torch: {cuda}"


def test_every_version_the_dockerfile_names_matches_pyproject():
    pins = pyproject_pins()
    named = PIN.findall("\n".join(args for _, args in instructions()))
    assert named, "the Dockerfile names no pinned package at all"
    for name, version in named:
        key = canonicalize_name(Requirement(name).name)
        assert key in pins, f"the Dockerfile pins {name}=={version}, which pyproject.toml does not pin"
        assert pins[key] == version, f"the Dockerfile pins {name}=={version}, pyproject.toml {pins[key]}"


def test_dependencies_are_installed_from_pyprojects_own_pins(tmp_path):
    """The build reads its requirements out of pyproject.toml: run that exact step here."""
    step = next(run for run in runs() if "tomllib" in run)
    generate = step.split("&&")[0]
    words = shlex.split(generate)
    assert words[:2] == ["python", "-c"] and words[3] == ">" and words[4] == "requirements.txt"
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    out = subprocess.run(
        [sys.executable, "-c", words[2]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    generated = {canonicalize_name(Requirement(line).name): line for line in out.splitlines() if line}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["wandb"]
    assert sorted(generated.values()) == sorted(expected)
    assert "pip install -r requirements.txt" in step
    copies = [args for keyword, args in instructions() if keyword == "COPY"]
    assert any(args.split()[0] == "pyproject.toml" for args in copies)


def test_the_project_itself_is_installed():
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in runs())
    copies = [args.split() for keyword, args in instructions() if keyword == "COPY"]
    assert any(parts[0] == "nisca" for parts in copies)


def test_runtime_stage_is_slim_and_runs_as_a_non_root_user():
    steps = instructions()
    stages = [index for index, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert len(stages) >= 2, "expected a builder and a runtime stage"
    runtime = steps[stages[-1] :]
    assert any(k == "COPY" and a.startswith("--from=builder") for k, a in runtime)
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "no USER in the runtime stage: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # Ray's docker runner needs rsync in the container and ssh on the head.
    installs = " ".join(args for keyword, args in runtime if keyword == "RUN")
    assert "rsync" in installs and "openssh-client" in installs
    # ... and reads HOME from the image's environment (else it assumes /root, which the user cannot use).
    user_home = re.search(
        r"useradd .*--create-home.* (\w+)$", next(a for k, a in runtime if k == "RUN" and "useradd" in a)
    )
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert user_home and f"HOME=/home/{user_home.group(1)}" in env


def dockerignore() -> set[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return {line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize("entry", [".venv", ".git", "runs", "results", "wandb", "**/__pycache__", ".pytest_cache"])
def test_dockerignore_keeps_local_state_out(entry):
    assert entry in dockerignore()


def test_dockerignore_keeps_what_the_build_copies():
    ignored = dockerignore()
    copied = {
        args.split()[0] for keyword, args in instructions() if keyword == "COPY" and not args.startswith("--from")
    }
    assert copied and not copied & ignored
