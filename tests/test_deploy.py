"""Deployment files checked by real tools and by running what they run.

No Docker engine and no AWS account here, so each file is covered another way: hadolint lints the
Dockerfile, and its install steps (deploy/docker/install.sh) run into a fresh venv, whose
contents must be exactly the runtime closure pyproject.toml declares; the service image's command
and health check run from that venv, and the Lambda image's entry point (awslambdaric) answers
events from a Runtime API on 127.0.0.1. cfn-lint checks the SAM template, before and after
aws-sam-translator turns it into CloudFormation; kubernetes-validate checks deploy/k8s;
check-jsonschema checks the compose file against the compose specification, and the compose
sample loader runs against moto's S3. Every tool also gets a broken file, to show it can fail.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
import yaml
from boto3.session import Session
from cfnlint.decode import decode as decode_cfn
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from samtranslator.parser.parser import Parser as SamParser
from samtranslator.translator.translator import Translator as SamTranslator

from benchmarks.lambda_cold import (
    FUNCTION_ENV,
    LAMBDA_UNSET,
    PACKAGE_CHECK,
    unexplained,
)
from cloudroi.cog import write_cog
from cloudroi.service import CoreRequest, ServiceConfig, ServiceState, handle
from cloudroi.service.config import settings_table
from cloudroi.testing import RangeServer
from tests.lambda_runtime_api import RuntimeClient

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
SAM_TEMPLATE = DEPLOY / "aws-sam" / "template.yaml"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
#: What `sam build` writes into the template in place of the Metadata block.
IMAGE_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cloudroi-lambda:0.2.0"


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable} (the test extra)"
    return str(path)


def run(argv: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )


def known_env_names() -> set[str]:
    """Every CLOUDROI_* variable the code reads: the service's SETTINGS and the library's own."""
    names: set[str] = set()
    for path in (ROOT / "cloudroi").rglob("*.py"):
        names.update(re.findall(r'"(CLOUDROI_[A-Z0-9_]+)"', path.read_text()))
    return names


def check_env(env: dict[str, Any], where: str) -> ServiceConfig:
    unknown = {k for k in env if k.startswith("CLOUDROI_")} - known_env_names()
    assert not unknown, f"{where}: variables no code reads: {unknown}"
    literal = {k: str(v) for k, v in env.items() if isinstance(v, str | int | float)}
    return ServiceConfig.from_env(literal)  # raises on a value the service would refuse


# --------------------------------------------------------------------------------------------
# the Dockerfile, parsed
# --------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.steps if o == op]

    def one(self, op: str) -> str:
        found = self.all(op)
        assert len(found) == 1, f"stage {self.name}: {op} {found}"
        return found[0]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def parse_dockerfile(text: str) -> Dockerfile:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw.strip())
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, line
            stages.append(Stage(m.group(2) or str(len(stages)), m.group(1)))
        elif not stages and op == "ARG":
            k, _, v = rest.partition("=")
            args[k] = v
        else:
            stages[-1].steps.append((op, rest))
    return Dockerfile(args, stages)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    return [str(v) for v in value]


def env_of(stage_args: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage_args:
        for part in shlex.split(args):
            k, _, v = part.partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    result = run(
        [hadolint, "--failure-threshold", "style", "--format", "json", str(ROOT / "Dockerfile")]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    # The same binary, offline, finds the faults of a careless Dockerfile.
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\n"
        "RUN pip install cloudroi\nCMD cloudroi serve\n"
    )
    result = run([hadolint, "--format", "json", str(bad)])
    assert result.returncode != 0
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3013", "DL3025"} <= codes, codes


def test_dockerfile_stages(dockerfile: Dockerfile) -> None:
    assert dockerfile.args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    names = [s.name for s in dockerfile.stages]
    assert names == ["build", "build-lambda", "base", "lambda", "service"]
    for i, stage in enumerate(dockerfile.stages):
        assert stage.base == "${PYTHON_IMAGE}" or stage.base in names[:i], stage
    # The last stage is what a plain `docker build .` produces: the service.
    service, lam = dockerfile.stage("service"), dockerfile.stage("lambda")
    assert exec_form(service.one("CMD")) == ["cloudroi", "serve"]
    assert exec_form(lam.one("ENTRYPOINT")) == ["/opt/venv/bin/python", "-m", "awslambdaric"]
    handler = exec_form(lam.one("CMD"))
    assert handler == ["cloudroi.serverless.handler"]
    module, _, attr = handler[0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))
    for stage in (service, lam):
        user = stage.one("USER")
        assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user), user  # numeric, not root
        # Runtime stages hold no source tree, compiler or pip step: only the venv from a build
        # stage (and the health check script).
        assert not stage.all("RUN")
        for copy in stage.all("COPY"):
            assert copy.startswith("--from=build") or copy.startswith("deploy/docker/"), copy
    port = env_of(service.all("ENV"))["CLOUDROI_PORT"]
    assert service.one("EXPOSE") == port
    assert env_of(service.all("ENV"))["CLOUDROI_HOST"] == "0.0.0.0"
    health = service.one("HEALTHCHECK")
    assert "/usr/local/bin/cloudroi-healthcheck" in health
    assert "deploy/docker/healthcheck.py /usr/local/bin/cloudroi-healthcheck" in service.all("COPY")


def test_dockerignore_lets_every_copied_path_through(dockerfile: Dockerfile) -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything else stays out of the build context
    included = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for stage in dockerfile.stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            for src in shlex.split(copy)[:-1]:
                assert (ROOT / src).exists(), src
                assert any(src == inc or src.startswith(inc + "/") for inc in included), src


# --------------------------------------------------------------------------------------------
# the image's install steps, run for real into a fresh venv
# --------------------------------------------------------------------------------------------


class Paths:
    """Container paths of the Dockerfile mapped into a temporary directory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def __call__(self, path: str) -> Path:
        assert path.startswith("/"), path
        return self.base / path.lstrip("/")


def stage_copies(stage: Stage, into: Paths) -> None:
    """Run the stage's COPY steps from the build context (the repository), as Docker does: a
    directory's contents go into the destination; files go into a destination ending in "/"."""
    workdir = "/"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")  # as .dockerignore says
    for op, args in stage.steps:
        if op == "WORKDIR":
            workdir = args
        elif op == "COPY" and not args.startswith("--from="):
            *sources, dest = shlex.split(args)
            target = into(dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}")
            for src in sources:
                origin = ROOT / src
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True, ignore=ignore)
                else:
                    into_dir = dest.endswith("/") or len(sources) > 1
                    dst = target / origin.name if into_dir else target
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, dst)


def stage_runs(stage: Stage, into: Paths) -> None:
    """Run the stage's RUN steps (each must be the install script) with the mapped paths."""
    runs = stage.all("RUN")
    assert runs, stage.name
    for args in runs:
        argv = shlex.split(args)
        assert argv[:2] == ["sh", "/usr/local/bin/cloudroi-install"], args
        script, src, venv, extras = argv[1:]
        env = {**os.environ, "PYTHON": sys._base_executable}
        env.pop("PIP_REQUIRE_VIRTUALENV", None)
        result = run(
            ["sh", str(into(script)), str(into(src)), str(into(venv)), extras], timeout=300, env=env
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def installed(venv: Path) -> dict[str, importlib.metadata.Distribution]:
    site = next(venv.glob("lib/python*/site-packages"))
    return {
        canonicalize_name(d.metadata["Name"]): d
        for d in importlib.metadata.distributions(path=[str(site)])
    }


def closure(dists: dict[str, importlib.metadata.Distribution], extras: set[str]) -> set[str]:
    """cloudroi[extras] and everything it requires, transitively, as the venv's metadata says."""
    todo: list[tuple[str, frozenset[str]]] = [("cloudroi", frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        assert name in dists, f"{name} is required but not installed"
        for text in dists[name].requires or ():
            req = Requirement(text)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (wanted or {""})
            ):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {name for name, _ in seen}


def declared(extras: set[str]) -> set[tuple[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return {(canonicalize_name(r.name), str(r.specifier)) for r in map(Requirement, reqs)}


def wheel_requires(dist: importlib.metadata.Distribution, extras: set[str]) -> set[tuple[str, str]]:
    out = set()
    for text in dist.requires or ():
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            out.add((canonicalize_name(req.name), str(req.specifier)))
    return out


def check_venv(venv: Path, extras: set[str]) -> None:
    dists = installed(venv)
    # Exactly the runtime closure: nothing from the test extra (pytest, moto, ruff...) and nothing
    # missing. pip and setuptools come with every venv.
    assert set(dists) - {"pip", "setuptools", "wheel"} == closure(dists, extras)
    assert wheel_requires(dists["cloudroi"], extras) == declared(extras)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    cmd: list[str], env: dict[str, str], proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while True:
        result = run(cmd, env=env, timeout=20)
        if result.returncode == 0:
            return
        assert proc.poll() is None, f"cloudroi serve exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, result.stderr + log.read_text()[-2000:]
        time.sleep(0.3)


def test_image_install_steps_in_a_fresh_venv(
    dockerfile: Dockerfile, tmp_path: Path, server: RangeServer
) -> None:
    """The Dockerfile's build stages, step by step, outside Docker: the wheel built from the
    copied context and installed with only its runtime dependencies, then the service image's
    command and health check, then the Lambda stage's extra install and entry point."""
    into = Paths(tmp_path)
    build = dockerfile.stage("build")
    stage_copies(build, into)
    assert sorted(p.name for p in into("/src").iterdir()) == [
        "README.md",
        "cloudroi",
        "pyproject.toml",
    ]
    stage_runs(build, into)
    venv = into("/opt/venv")
    check_venv(venv, {"s3", "geo"})
    result = run([str(venv / "bin" / "cloudroi"), "--help"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout

    # The service image: its ENV, its CMD, its HEALTHCHECK (on loopback only, here).
    service = dockerfile.stage("service")
    stage_copies(service, into)
    port = free_port()
    env = {
        **os.environ,
        **env_of(service.all("ENV")),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "CLOUDROI_HOST": "127.0.0.1",
        "CLOUDROI_PORT": str(port),
    }
    health = service.one("HEALTHCHECK")
    check = exec_form(health[health.index("CMD") + 3 :].strip())
    check = [str(into(a)) if a.startswith("/usr/local/bin/") else a for a in check]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            exec_form(service.one("CMD")),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(check, env, proc, log)
    finally:
        proc.terminate()
        proc.wait(15)
    assert f"serving on http://127.0.0.1:{port}" in log.read_text()
    result = run(check, env=env, timeout=20)
    assert result.returncode == 1  # and it notices when the server is gone
    assert "unhealthy" in result.stderr

    # The Lambda image: the same venv plus awslambdaric, then its ENTRYPOINT + CMD.
    stage_runs(dockerfile.stage("build-lambda"), into)
    check_venv(venv, {"s3", "geo", "lambda"})
    lam = dockerfile.stage("lambda")
    entry = exec_form(lam.one("ENTRYPOINT"))
    python = str(into(entry[0]))
    prefix = f"deploy-{uuid.uuid4().hex[:8]}/"
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    server.add(prefix + "a.tif", write_cog(data, tile=32))
    event = json.loads((ROOT / "tests" / "events" / "function-url.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/region"
    event["rawQueryString"] = f"url={server.url(prefix + 'a.tif')}&window=0,0,64,64&format=npy"
    with RuntimeClient(
        python,
        exec_form(lam.one("CMD"))[0],
        {"CLOUDROI_ALLOWED_SOURCES": server.url(prefix)},
        cwd=str(tmp_path),
    ) as client:
        kind, payload = client.invoke(event)
    assert kind == "response", payload
    assert payload["statusCode"] == 200, payload
    arr = np.load(io.BytesIO(base64.b64decode(payload["body"])))
    np.testing.assert_array_equal(arr[0], data)


# --------------------------------------------------------------------------------------------
# AWS SAM
# --------------------------------------------------------------------------------------------


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("cfn-lint"), "--format", "parseable", str(path)], timeout=120)


def translate(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit (after `sam build` set ImageUri)."""
    template = json.loads(json.dumps(template))
    function = template["Resources"]["CloudroiFunction"]
    function.pop("Metadata")
    function["Properties"]["ImageUri"] = IMAGE_URI

    # Offline: no managed-policy lookups (the template names none), a fixed region.
    translator = SamTranslator({}, SamParser(), boto_session=Session(region_name="eu-west-1"))
    out: dict[str, Any] = translator.translate(template, parameter_values={})
    return out


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    template, problems = decode_cfn(str(SAM_TEMPLATE))
    assert not problems
    assert template is not None
    return dict(template)


def test_sam_template_passes_cfn_lint(sam: dict[str, Any], tmp_path: Path) -> None:
    result = cfn_lint(SAM_TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    translated = tmp_path / "cloudformation.json"
    translated.write_text(json.dumps(translate(sam), indent=1))
    result = cfn_lint(translated)
    assert result.returncode == 0, result.stdout + result.stderr
    # Negative controls: the same pipeline refuses a misspelt IAM action and a bad reference.
    bad = translate(sam)
    bad["Resources"]["CloudroiFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ][0]["Action"] = "s3:GetObjekt"
    bad["Outputs"]["FunctionUrl"]["Value"] = {"Fn::GetAtt": ["CloudroiFunctionUrI", "FunctionUrl"]}
    translated.write_text(json.dumps(bad))
    result = cfn_lint(translated)
    assert result.returncode != 0
    assert "W3037" in result.stdout
    assert "E6101" in result.stdout or "E1010" in result.stdout


def test_sam_function_and_policy(sam: dict[str, Any], dockerfile: Dockerfile) -> None:
    function = sam["Resources"]["CloudroiFunction"]
    meta, props = function["Metadata"], function["Properties"]
    assert (SAM_TEMPLATE.parent / meta["DockerContext"] / meta["Dockerfile"]).resolve() == (
        ROOT / "Dockerfile"
    )
    assert meta["DockerBuildTarget"] in [s.name for s in dockerfile.stages]
    assert props["PackageType"] == "Image"
    env = props["Environment"]["Variables"]
    config = check_env(env, "template.yaml")
    # The service answers 504 before Lambda and API Gateway (30 s) give up.
    assert config.request_timeout < props["Timeout"] <= 30
    assert props["FunctionUrlConfig"]["AuthType"] in ("AWS_IAM", "NONE")

    out = translate(sam)
    resources = out["Resources"]
    assert resources["CloudroiFunction"]["Properties"]["Code"] == {"ImageUri": IMAGE_URI}
    assert resources["CloudroiFunctionUrl"]["Type"] == "AWS::Lambda::Url"
    api = resources["CloudroiHttpApi"]["Properties"]["Body"]["paths"]["$default"]
    integration = api["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
    assert integration["payloadFormatVersion"] == "2.0"
    # The role reads objects under the allowed prefix and nothing else.
    role = resources["CloudroiFunctionRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [(s["Effect"], s["Action"]) for s in statements] == [("Allow", "s3:GetObject")]
    assert statements[0]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucket}/${SourcePrefix}*"
    }
    assert env["CLOUDROI_ALLOWED_SOURCES"] == {"Fn::Sub": "s3://${SourceBucket}/${SourcePrefix}"}
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


# --------------------------------------------------------------------------------------------
# AWS SAM, zip package (deploy/aws-sam/template-zip.yaml, deploy/aws-sam/build_zip.py)
# --------------------------------------------------------------------------------------------

SAM_ZIP_TEMPLATE = DEPLOY / "aws-sam" / "template-zip.yaml"
BUILD_ZIP = DEPLOY / "aws-sam" / "build_zip.py"


def translate_zip(template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit once the zip is uploaded."""
    template = json.loads(json.dumps(template))
    template["Resources"]["CloudroiFunction"]["Properties"]["CodeUri"] = "s3://bucket/fn.zip"
    translator = SamTranslator({}, SamParser(), boto_session=Session(region_name="eu-west-1"))
    out: dict[str, Any] = translator.translate(template, parameter_values=parameters)
    return out


@pytest.fixture(scope="module")
def sam_zip() -> dict[str, Any]:
    template, problems = decode_cfn(str(SAM_ZIP_TEMPLATE))
    assert not problems
    assert template is not None
    return dict(template)


def test_sam_zip_template_passes_cfn_lint(sam_zip: dict[str, Any], tmp_path: Path) -> None:
    """The template and its translation, with SnapStart on, in one cfn-lint run (the container
    template's test shows the same pipeline failing on broken files); a deprecated runtime is
    refused."""
    good = tmp_path / "cloudformation.json"
    good.write_text(json.dumps(translate_zip(sam_zip, SnapStart="true")))
    bad = translate_zip(sam_zip)
    bad["Resources"]["CloudroiFunction"]["Properties"]["Runtime"] = "python3.7"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(bad))
    result = run(
        [tool("cfn-lint"), "--format", "parseable", str(SAM_ZIP_TEMPLATE), str(good), str(broken)],
        timeout=120,
    )
    problems = [line for line in result.stdout.splitlines() if line.strip()]
    assert problems, result.stderr
    assert all(line.startswith(str(broken)) for line in problems), result.stdout
    assert "python3.7" in result.stdout


def test_sam_zip_function_matches_the_build_and_the_container_one(
    sam_zip: dict[str, Any], sam: dict[str, Any]
) -> None:
    build_zip = load_build_zip()
    props = sam_zip["Resources"]["CloudroiFunction"]["Properties"]
    assert props["PackageType"] == "Zip"
    assert props["Runtime"] == f"python{build_zip.PYTHON_VERSION}"
    assert (SAM_ZIP_TEMPLATE.parent / props["CodeUri"]).parent == BUILD_ZIP.parent / ".build"
    module, _, attr = props["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))
    params = sam_zip["Parameters"]
    assert params["Architecture"]["Default"] == "arm64"
    assert set(params["Architecture"]["AllowedValues"]) == set(build_zip.PLATFORMS)
    env = props["Environment"]["Variables"]
    config = check_env(env, "template-zip.yaml")
    # the cold-start benchmark runs the function with the template's other variables
    assert {k: v for k, v in env.items() if not k.startswith("CLOUDROI_")} == FUNCTION_ENV
    container_env = sam["Resources"]["CloudroiFunction"]["Properties"]["Environment"]
    assert (
        container_env["Variables"]["OPENBLAS_NUM_THREADS"] == FUNCTION_ENV["OPENBLAS_NUM_THREADS"]
    )
    assert config.request_timeout < props["Timeout"] <= 30
    # One request at a time: the block cache and one request at its limit fit the memory.
    request_mb = config.max_request_bytes >> 20
    assert params["MemorySize"]["Default"] >= params["BlockCacheMB"]["Default"] + request_mb + 128
    # The policy and the allowlist are the container template's.
    container = sam["Resources"]["CloudroiFunction"]["Properties"]
    assert props["Policies"] == container["Policies"]
    assert (
        env["CLOUDROI_ALLOWED_SOURCES"]
        == container["Environment"]["Variables"]["CLOUDROI_ALLOWED_SOURCES"]
    )
    # SnapStart: off by default, on for published versions when asked.
    for flag, expected in (("false", None), ("true", {"ApplyOn": "PublishedVersions"})):
        out = translate_zip(sam_zip, SnapStart=flag)
        function = out["Resources"]["CloudroiFunction"]["Properties"]
        assert function["Runtime"] == props["Runtime"]
        snap = function.get("SnapStart")
        condition = snap["Fn::If"] if snap else None
        assert condition is not None
        assert condition[0] == "SnapStartOn"
        assert (condition[1] if flag == "true" else None) == expected
        assert any(r["Type"] == "AWS::Lambda::Alias" for r in out["Resources"].values())


def load_build_zip() -> Any:
    spec = importlib.util.spec_from_file_location("build_zip", BUILD_ZIP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cached_name(module: str, tag: str) -> str:
    """Where ``importlib`` looks for the byte code of ``module`` (a path in the zip)."""
    folder, _, stem = module[: -len(".py")].rpartition("/")
    return f"{folder}/__pycache__/{stem}.{tag}.pyc".lstrip("/")


def test_zip_package_builds_under_the_limit_and_answers_alone(
    tmp_path: Path, server: RangeServer
) -> None:
    """build_zip.py --from-env (host platform, the lambda extra for the runtime client that
    Lambda itself would provide), then the zip, unpacked, runs under ``python -S`` (no
    site-packages: only the standard library and the zip) and answers a /region."""
    result = run(
        [
            sys.executable,
            str(BUILD_ZIP),
            "--from-env",
            "--extras",
            "lambda",
            "--zip-level",
            "1",
            "--out",
            str(tmp_path / "build"),
            "--json",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    archive = Path(report["zip"])
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        unzipped = sum(i.file_size for i in infos)
        names = {i.filename for i in infos}
        zf.extractall(tmp_path / "task")
    assert unzipped == report["unzipped_bytes"] < load_build_zip().LAMBDA_UNZIPPED_LIMIT
    assert report["zipped_bytes"] == archive.stat().st_size
    assert "cloudroi/serverless.py" in names
    assert not [n for n in names if n.endswith(".pyi")]
    # byte code for every module, made for this Python, used without checking the source
    # (/var/task is read-only: a module without it is compiled on every cold start)
    assert report["bytecode"] is True
    tag = sys.implementation.cache_tag
    modules = [n for n in names if n.endswith(".py")]
    missing = [m for m in modules if _cached_name(m, tag) not in names]
    assert len(modules) > 100
    assert not missing, missing[:5]
    with zipfile.ZipFile(archive) as zf:
        header = zf.read(f"cloudroi/__pycache__/serverless.{tag}.pyc")[:8]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, unchecked
    assert not [n for n in names if n.startswith(("pytest", "moto", "ruff", "botocore"))]
    # for the cold start: the trusted CAs as a hashed directory (certifi's bundle), and the
    # compiled code of the dataclasses the function defines
    assert report["ca_certificates"] > 100
    hashed = [n for n in names if re.fullmatch(r"cloudroi-ca/[0-9a-f]{8}\.\d", n)]
    assert len(hashed) == report["ca_certificates"]
    assert report["ca_bundle"].endswith("cacert.pem")
    assert report["code_cache_texts"] > 300
    assert report["code_cache_from"] == "package"
    assert "cloudroi/_codecache.marshal" in names
    # and the regular expressions modules compile as they load
    assert report["pattern_cache_patterns"] > 100
    assert "cloudroi/_patterncache.marshal" in names

    task = tmp_path / "task"
    prefix = f"zip-{uuid.uuid4().hex[:8]}/"
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    server.add(prefix + "a.tif", write_cog(data, tile=32))
    event = json.loads((ROOT / "tests" / "events" / "function-url.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/region"
    event["rawQueryString"] = f"url={server.url(prefix + 'a.tif')}&window=0,0,64,64&format=npy"
    env = {"CLOUDROI_ALLOWED_SOURCES": server.url(prefix), "PYTHONPATH": str(task)}
    with RuntimeClient(
        sys._base_executable,
        "cloudroi.serverless.handler",
        env,
        cwd=str(task),
        python_args=["-S"],
        unset=LAMBDA_UNSET,  # as on Lambda
    ) as client:
        kind, payload = client.invoke(event)
        query = f"url={server.url(prefix + 'a.tif')}"
        kind_info, info = client.invoke({**event, "rawPath": "/info", "rawQueryString": query})
    assert kind == "response", payload
    assert payload["statusCode"] == 200, payload
    arr = np.load(io.BytesIO(base64.b64decode(payload["body"])))
    np.testing.assert_array_equal(arr[0], data)
    assert (kind_info, info["statusCode"]) == ("response", 200), info
    assert json.loads(info["body"])["dtype"] == "uint16"

    # the package's two cold-start helpers are in use: no generated text (dataclass and attrs
    # methods, namedtuples, string annotations...) compiled while every endpoint's module
    # loads, every generating module served by the table, and aiohttp's contexts made from
    # the CA directory
    check = subprocess.run(
        [sys._base_executable, "-S", "-c", PACKAGE_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=task,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("SSL_CERT", "PYTHON"))},
            "PYTHONPATH": str(task),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    )
    assert check.returncode == 0, check.stderr[-3000:]
    found = json.loads(check.stdout)
    assert {"attr._make", "collections", "dataclasses", "typing"} <= set(found.pop("served"))
    # every pattern compiled served from the pattern table, but those that differ per process
    assert unexplained(found.pop("parsed")) == []
    assert found == {
        "table": True,
        "compiled": 0,
        "sample": [],
        "unserved": [],
        "patterns": True,
        "pattern_table": True,
        "loaded": 0,
        "env": [],
    }


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    docs = [d for path in K8S for d in yaml.safe_load_all(path.read_text()) if d]
    return {d["kind"]: d for d in docs}


def test_k8s_manifests_pass_kubernetes_validate(tmp_path: Path) -> None:
    validate = tool("kubernetes-validate")
    result = run([validate, "--strict", *map(str, K8S)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(K8S)
    bad = tmp_path / "deployment.yaml"
    bad.write_text(
        (DEPLOY / "k8s" / "deployment.yaml")
        .read_text()
        .replace("containerPort: 8080", "containerPort: http-port")
    )
    result = run([validate, "--strict", str(bad)])
    assert result.returncode != 0
    assert "containerPort" in result.stdout + result.stderr


def test_k8s_objects_fit_together(k8s: dict[str, dict[str, Any]], dockerfile: Dockerfile) -> None:
    assert set(k8s) >= {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    config_map, deployment = k8s["ConfigMap"], k8s["Deployment"]
    config = check_env(config_map["data"], "configmap.yaml")
    assert config.allowed_sources
    assert config.host == "0.0.0.0"
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    (container,) = spec["containers"]
    uid = int(dockerfile.stage("service").one("USER").split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["args"] == exec_form(dockerfile.stage("service").one("CMD"))
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    (port,) = container["ports"]
    assert port["containerPort"] == config.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    service = k8s["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == port["name"]
    target = k8s["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


# --------------------------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_compose_file_passes_the_compose_schema(tmp_path: Path) -> None:
    checker = tool("check-jsonschema")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("service_completed_successfully", "service_done"))
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(bad)])
    assert result.returncode != 0


def test_compose_services_fit_together(compose: dict[str, Any], dockerfile: Dockerfile) -> None:
    services = compose["services"]
    assert set(services) == {"minio", "load-sample", "cloudroi"}
    for name in ("load-sample", "cloudroi"):
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
            ROOT / "Dockerfile"
        )
        assert build["target"] == "service"
    assert re.fullmatch(r"minio/minio:RELEASE\.\S+", services["minio"]["image"])  # pinned
    loader = services["load-sample"]
    source = loader["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / source).is_file()
    config = check_env(services["cloudroi"]["environment"], "docker-compose.yml")
    assert config.allowed_sources == (f"s3://{loader['environment']['SAMPLE_BUCKET']}/",)
    assert config.s3_endpoint_url == "http://minio:9000"
    deps = services["cloudroi"]["depends_on"]
    assert deps == {"load-sample": {"condition": "service_completed_successfully"}}
    for service in services.values():
        for port in service.get("ports", ()):
            assert port.startswith("127.0.0.1:"), port


def documented_info_query(text: str) -> list[tuple[str, str]]:
    m = re.search(r'curl -s "(http://127\.0\.0\.1:8080/info\?[^"]+)"', text)
    assert m, "the compose file's comment shows no /info request"
    return parse_qsl(urlsplit(m.group(1)).query)


async def test_compose_sample_loader_against_s3(compose: dict[str, Any], s3_server: str) -> None:
    """The loader container's script against moto's S3 (standing in for MinIO), then the /info
    request the compose file documents, answered by the service core with the cloudroi
    service's environment."""
    services = compose["services"]
    env = {
        **os.environ,
        **{k: str(v) for k, v in services["load-sample"]["environment"].items()},
        "CLOUDROI_S3_ENDPOINT_URL": s3_server,
        "SAMPLE_SIZE": "512",
        "SAMPLE_WAIT": "10",
    }
    script = COMPOSE.parent / services["load-sample"]["volumes"][0].split(":")[0]
    first = await asyncio.to_thread(run, [sys.executable, str(script)], 120, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "uploaded s3://cloudroi-sample/sample-dem.tif" in first.stdout
    again = await asyncio.to_thread(run, [sys.executable, str(script)], 120, env=env)
    assert again.returncode == 0
    assert "already there" in again.stdout

    service_env = {k: str(v) for k, v in services["cloudroi"]["environment"].items()}
    config = ServiceConfig.from_env(service_env, s3_endpoint_url=s3_server)
    state = await ServiceState.start(config)
    try:
        resp = await handle(
            CoreRequest.build("GET", "/info", documented_info_query(COMPOSE.read_text())), state
        )
    finally:
        await state.close()
    assert resp.status == 200, resp.body
    doc = resp.json()
    assert (doc["width"], doc["height"], doc["dtype"], doc["crs"]) == (512, 512, "float32", 32633)


# --------------------------------------------------------------------------------------------
# docs
# --------------------------------------------------------------------------------------------


def test_deploy_docs_show_the_settings_and_real_paths() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert settings_table() in (ROOT / "README.md").read_text()  # the one copy of the table
    for path in re.findall(r"(deploy/[\w./-]+|Dockerfile)", docs):
        assert (ROOT / path.rstrip(".")).exists(), path
    for var in set(re.findall(r"CLOUDROI_[A-Z0-9_]+", docs)):
        assert var in known_env_names(), var
