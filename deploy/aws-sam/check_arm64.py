"""Run the arm64 zip package on an x86_64 machine, under qemu-aarch64, and compare its answers
with the x86_64 package's, byte for byte.

    python deploy/aws-sam/check_arm64.py --make-sysroot   # once, as root: qemu + arm64 CPython
    python deploy/aws-sam/check_arm64.py                  # build both packages, run, compare

Lambda's arm64 functions run on Graviton; this machine has no arm64 CPU. qemu's user-mode
emulator runs an arm64 CPython (Debian bookworm's, 3.11, unpacked into ``--sysroot``; Lambda's
runtime is 3.12, which Debian does not package) on the package built from PyPI's aarch64 wheels
(``build_zip.py --arch arm64 --python-version 3.11``, byte code from this Python, 3.11 too). The
function then answers under the real runtime client (``python -m awslambdaric``, as in the
tests) with a Lambda Runtime API on 127.0.0.1, and the same requests go to the x86_64 package
(``--from-env``). It checks that the package uses its cold-start helpers (no generated code
compiled while every endpoint loads, the CA directory) and that every answer equals the x86_64
one. Emulated time says nothing about Graviton's: no timings are compared. Needs the network
for the arm64 wheels (PyPI) and, with ``--make-sysroot``, Debian's package archive.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import lambda_cold as lc  # noqa: E402 (after the path)
from cloudroi.testing import RangeServer  # noqa: E402
from tests.lambda_runtime_api import RuntimeClient  # noqa: E402
from tests.test_deploy import PACKAGE_CHECK  # noqa: E402

#: Debian's arm64 packages an arm64 CPython 3.11 needs, with the libraries its modules load.
DEBS = [
    *("libc6", "libgcc-s1", "libstdc++6", "libexpat1", "zlib1g", "libssl3", "libffi8"),
    *("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libbz2-1.0"),
    *("liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8"),
    *("libcrypt1", "libnsl2", "libtirpc3", "libdb5.3", "libgdbm6"),
]


def make_sysroot(sysroot: Path) -> None:
    """qemu-user-static, and Debian's arm64 CPython unpacked into ``sysroot`` (not installed:
    it would replace this machine's python3)."""
    subprocess.run(["dpkg", "--add-architecture", "arm64"], check=True)
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "qemu-user-static"], check=True)
    with tempfile.TemporaryDirectory() as debs:
        os.chmod(debs, 0o755)  # apt's download user writes here
        subprocess.run(["apt-get", "download", *(f"{d}:arm64" for d in DEBS)], cwd=debs, check=True)
        for deb in Path(debs).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(sysroot)], check=True)


def arm64_python(sysroot: Path, work: Path) -> str:
    """A script that runs the sysroot's python3.11 under qemu (what RuntimeClient starts)."""
    script = work / "python-arm64"
    script.write_text(
        f'#!/bin/sh\nexec qemu-aarch64-static -L {sysroot} {sysroot}/usr/bin/python3.11 "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def build(out: Path, *args: str) -> Path:
    argv = [sys.executable, str(ROOT / "deploy/aws-sam/build_zip.py"), "--out", str(out)]
    argv += ["--extras", "s3,geo,lambda", "--zip-level", "1", *args]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return out / "package"


def function_env(task: Path, allowed: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", *lc.LAMBDA_UNSET))}
    env.update(lc.FUNCTION_ENV)
    env.update({"PYTHONPATH": str(task), "PYTHONDONTWRITEBYTECODE": "1"})
    env["CLOUDROI_ALLOWED_SOURCES"] = allowed
    return env


def answers(python: str, task: Path, server: RangeServer, events: dict[str, Any]) -> dict[str, Any]:
    """Status and body of each event, from one function process."""
    env = function_env(task, server.url(""))
    got = {}
    with RuntimeClient(
        python,
        lc.HANDLER,
        env,
        cwd=str(task),
        python_args=["-S"],
        timeout=1800,
        unset=lc.LAMBDA_UNSET,
    ) as client:
        for name, event in events.items():
            kind, payload = client.invoke(event)
            body = payload.get("body", "") if kind == "response" else json.dumps(payload)
            if payload.get("isBase64Encoded"):
                body = base64.b64decode(body)
            got[name] = (kind, payload.get("statusCode"), body)
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sysroot", type=Path, default=Path("/tmp/cloudroi-arm64-sysroot"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/cloudroi-arm64-check"))
    ap.add_argument("--make-sysroot", action="store_true", help="install qemu, unpack CPython")
    args = ap.parse_args()
    if args.make_sysroot:
        make_sysroot(args.sysroot)
        return 0
    if sys.version_info[:2] != (3, 11) or not shutil.which("qemu-aarch64-static"):
        raise SystemExit("needs Python 3.11 here and qemu-aarch64-static (--make-sysroot)")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    python = arm64_python(args.sysroot, args.work)
    arm = build(args.work / "arm64", "--arch", "arm64", "--python-version", "3.11",
                "--compile-with", sys.executable)  # fmt: skip
    x86 = build(args.work / "x86_64", "--from-env")

    env = function_env(arm, "")
    check = subprocess.run(
        [python, "-S", "-c", PACKAGE_CHECK], cwd=arm, env=env, capture_output=True, text=True
    )
    print("package check:", check.stdout.strip() or check.stderr[-3000:])
    machine = subprocess.run(
        [python, "-S", "-c", "import platform, numpy; print(platform.machine(), numpy.__file__)"],
        cwd=arm, env=env, capture_output=True, text=True,
    )  # fmt: skip
    print("runs on:", machine.stdout.strip())

    with RangeServer(lc.corpus()) as server:
        url = server.url("scene.tif")
        events = {
            **lc.requests(server),
            "/region npy": lc.event("/region", f"url={url}&window=512,512,512,512&format=npy"),
            "/region lon/lat": lc.event(
                "/region", f"url={url}&bbox=15.05,54.9,15.2,55.0&coord_crs=EPSG:4326&format=npy"
            ),
            "/tiles z10 webp": lc.event("/tiles/WebMercatorQuad/10/555/324.webp", f"url={url}"),
            "/statistics": lc.event("/statistics", f"url={url}"),
        }
        on_arm, on_x86 = (
            answers(python, arm, server, events),
            answers(sys.executable, x86, server, events),
        )
    same = True
    for name in events:
        a, b = on_arm[name], on_x86[name]
        same = same and a == b and a[1] == 200
        size = len(a[2])
        print(f"{name:18} arm64 {a[1]}  x86_64 {b[1]}  equal: {a == b}  ({size} bytes)")
    found = json.loads(check.stdout) if check.returncode == 0 else {}
    ok = (
        same
        and found.get("table") is True
        and found.get("loaded") == 0
        and "aarch64" in machine.stdout
    )
    print("arm64 package:", "answers as the x86_64 one" if ok else "DIFFERS or failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
