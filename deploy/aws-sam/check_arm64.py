"""Run the arm64 zip package on an x86_64 machine, under qemu-aarch64, and compare its answers
with the x86_64 package's, byte for byte.

    python deploy/aws-sam/check_arm64.py --make-sysroot   # once, as root: qemu + arm64 CPython
    python deploy/aws-sam/check_arm64.py                  # build both packages, run, compare

Lambda's arm64 functions run on Graviton; this machine has no arm64 CPU. qemu's user-mode
emulator runs an arm64 CPython (Debian 12 bookworm's 3.11, unpacked into ``--sysroot``; Lambda's
runtime is 3.12, which bookworm does not package, so the host must be Debian 12 and this script
run by a Python 3.11) on the package built from PyPI's aarch64 wheels (``build_zip.py --arch
arm64 --python-version 3.11``, byte code from this Python), pinned to this environment's
versions (a constraints file), so that both packages hold the same releases. The function then
answers under the real runtime client (``python -m awslambdaric``, as in the tests) with a
Lambda Runtime API on 127.0.0.1, and the same requests go to the x86_64 package (``--from-env``).
It passes when every answer is a 200 equal to the x86_64 one and the package uses its
cold-start helpers: no generated code compiled while every endpoint loads, every generating
module served by the code table, no CA parsed up front. Emulated time says nothing about
Graviton's: no timings are compared. Needs the network for the arm64 wheels (PyPI) and, with
``--make-sysroot``, Debian's package archive; ``--make-sysroot`` also adds arm64 to dpkg's
architectures.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import lambda_cold as lc  # noqa: E402 (after the path)
from cloudroi.testing import RangeServer  # noqa: E402
from tests.lambda_runtime_api import RuntimeClient  # noqa: E402

#: Debian 12's arm64 packages an arm64 CPython 3.11 needs, with the libraries its modules load.
DEBS = [
    *("libc6", "libgcc-s1", "libstdc++6", "libexpat1", "zlib1g", "libssl3", "libffi8"),
    *("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libbz2-1.0"),
    *("liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8"),
    *("libcrypt1", "libnsl2", "libtirpc3", "libdb5.3", "libgdbm6"),
]
#: How long one step may take under emulation (a cold start there takes some 10 s).
STEP_S = 1200


def make_sysroot(sysroot: Path) -> None:
    """qemu-user-static, and Debian's arm64 CPython unpacked into ``sysroot`` (not installed:
    it would replace this machine's python3)."""
    subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static"], check=True)
    debs = sysroot.with_name(sysroot.name + "-debs")
    debs.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", "-o", "APT::Sandbox::User=root"]
    subprocess.run([*download, *(f"{d}:arm64" for d in DEBS)], cwd=debs, check=True)
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(sysroot)], check=True)


def arm64_python(sysroot: Path, work: Path) -> str:
    """A script that runs the sysroot's python3.11 under qemu (what RuntimeClient starts)."""
    script = work / "python-arm64"
    script.write_text(
        f'#!/bin/sh\nexec qemu-aarch64-static -L {sysroot} {sysroot}/usr/bin/python3.11 "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def build(out: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    argv = [sys.executable, str(ROOT / "deploy/aws-sam/build_zip.py"), "--out", str(out)]
    argv += ["--extras", "s3,geo,lambda", "--zip-level", "1", *args]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, timeout=STEP_S)
    return out / "package"


def pinned(work: Path) -> dict[str, str]:
    """An environment whose pip installs this environment's releases (PIP_CONSTRAINT)."""
    names = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() != "cloudroi":
            names[name.lower()] = f"{name}=={dist.version}"
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(sorted(names.values())) + "\n")
    return {**os.environ, "PIP_CONSTRAINT": str(constraints)}


def run(fn: lc.Function, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in lc.LAMBDA_UNSET}
    env.update({**fn.env, "PYTHONDONTWRITEBYTECODE": "1"})
    argv = [fn.python, *fn.args, "-c", code]
    return subprocess.run(argv, cwd=fn.cwd, env=env, capture_output=True, text=True, timeout=STEP_S)


def answers(fn: lc.Function, server: RangeServer, events: dict[str, Any]) -> dict[str, Any]:
    """(kind, status, body) of each event, from one function process."""
    env = {**lc.FUNCTION_ENV, **fn.env, "PYTHONDONTWRITEBYTECODE": "1"}
    env["CLOUDROI_ALLOWED_SOURCES"] = server.url("")
    got = {}
    client = RuntimeClient(
        fn.python, lc.HANDLER, env, cwd=str(fn.cwd), python_args=fn.args, timeout=STEP_S,
        unset=lc.LAMBDA_UNSET,
    )  # fmt: skip
    with client:
        for name, event in events.items():
            kind, payload = client.invoke(event)
            if not isinstance(payload, dict) or "body" not in payload:
                got[name] = (kind, None, json.dumps(payload).encode())
                continue
            body = payload["body"]
            body = base64.b64decode(body) if payload.get("isBase64Encoded") else body.encode()
            got[name] = (kind, payload.get("statusCode"), body)
    return got


def events_for(server: RangeServer) -> dict[str, Any]:
    url = server.url("scene.tif")
    return {
        **lc.requests(server),
        "/region npy": lc.event("/region", f"url={url}&window=512,512,512,512&format=npy"),
        "/region lon/lat": lc.event(
            "/region", f"url={url}&bbox=15.05,54.9,15.2,55.0&coord_crs=EPSG:4326&format=npy"
        ),
        "/tiles z10 webp": lc.event("/tiles/WebMercatorQuad/10/555/324.webp", f"url={url}"),
        "/statistics": lc.event("/statistics", f"url={url}"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sysroot", type=Path, default=Path("/var/tmp/cloudroi-arm64-sysroot"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/cloudroi-arm64-check"))
    ap.add_argument("--make-sysroot", action="store_true", help="install qemu, unpack CPython")
    args = ap.parse_args()
    if args.make_sysroot:
        make_sysroot(args.sysroot)
        return 0
    if sys.version_info[:2] != (3, 11):
        raise SystemExit("run this with a Python 3.11 (the arm64 CPython's version)")
    if (
        not shutil.which("qemu-aarch64-static")
        or not (args.sysroot / "usr/bin/python3.11").exists()
    ):
        raise SystemExit(f"no qemu-aarch64-static or no {args.sysroot}: run --make-sysroot")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    arm_task = build(
        args.work / "arm64", "--arch", "arm64", "--python-version", "3.11",
        "--compile-with", sys.executable, env=pinned(args.work),
    )  # fmt: skip
    arm = dataclasses.replace(
        lc.Function.package(arm_task), python=arm64_python(args.sysroot, args.work)
    )
    x86 = lc.Function.package(build(args.work / "x86_64", "--from-env"))

    machine = run(arm, "import platform, numpy; print(platform.machine())")
    check = run(arm, lc.PACKAGE_CHECK)
    print("runs on:", machine.stdout.strip() or machine.stderr[-2000:])
    print("package check:", check.stdout.strip() or check.stderr[-3000:])
    if machine.stdout.strip() != "aarch64" or check.returncode:
        return 1
    found = json.loads(check.stdout)
    helpers = found["table"] and not found["compiled"] and not found["unserved"]
    helpers = helpers and found["loaded"] == 0
    if found["pattern_table"]:
        helpers = helpers and found["patterns"] and not lc.unexplained(found["parsed"])
    else:  # recorded by the build machine's Python, whose re is not this runtime's: unused
        print("pattern table: written by another release's re, not used (as designed)")
        helpers = helpers and not found["patterns"]

    with RangeServer(lc.corpus()) as server:
        events = events_for(server)
        on_arm, on_x86 = answers(arm, server, events), answers(x86, server, events)
    same = True
    for name in events:
        a, b = on_arm[name], on_x86[name]
        same = same and a == b and a[1] == 200
        print(f"{name:18} arm64 {a[1]}  x86_64 {b[1]}  equal: {a == b}  ({len(a[2])} bytes)")
    ok = same and helpers
    print("arm64 package:", "answers as the x86_64 one" if ok else "DIFFERS, or a helper unused")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
