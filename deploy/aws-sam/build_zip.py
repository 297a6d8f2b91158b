"""Build the zip package of the Lambda function: cloudroi and its runtime dependencies for the
chosen extras, for Lambda's Python runtime on arm64 or x86_64, checked against Lambda's 250 MB
unzipped limit.

    python deploy/aws-sam/build_zip.py                          # s3,geo for arm64, Python 3.12
    python deploy/aws-sam/build_zip.py --arch x86_64 --extras s3
    python deploy/aws-sam/build_zip.py --from-env --extras s3   # copy from this interpreter's
                                                                #   environment (host platform)

The default (PyPI) mode runs ``pip install --target --platform manylinux... --only-binary=:all:
--python-version 3.12 --implementation cp``: binary wheels for the target, whatever the build
machine. ``--from-env`` copies the installed distributions of the running interpreter (the
closure of cloudroi[extras] as their metadata declares it): no network, the host's platform and
Python version; CI builds that way. cloudroi itself is copied from this source tree with a
dist-info naming its version, so ``importlib.metadata`` finds it.

Then it drops what the function never loads: ``*.pyi`` stubs, test suites inside packages,
pip's ``bin/`` scripts, RECORD files, numpy's C headers and static libraries, and any byte code
that came with the files. And it compiles the byte code anew with the target's Python
(``compileall --invalidation-mode unchecked-hash``): the runtime's /var/task is read-only, so a
package without ``__pycache__`` is compiled from source on every cold start (0.6-1.3 s of a
first response, measured with ``benchmarks/lambda_cold.py --package``). The byte code must come
from the runtime's Python version: ``--from-env`` uses the running interpreter, the PyPI mode
``--compile-with`` (default: ``python3.12`` or whichever ``pythonX.Y`` ``--python-version`` names,
found on PATH); without one it warns and ships sources only (``"bytecode": false`` in the
report). Hash-based, unchecked: Python loads it without comparing timestamps (unzipping does not
keep them exactly), which is right for a package that never changes after it is built.
It also writes the trusted CA set (certifi's bundle as of the build, or ``--ca-bundle``) as an
OpenSSL hashed directory, ``cloudroi-ca/`` (``openssl x509 -subject_hash`` names each
certificate's file), from which the TLS contexts aiohttp makes at import load their CAs without
parsing a bundle (``cloudroi.service.trust``; about 90 ms of each cold start); without certifi
or the openssl command it warns and ships none (``"ca_certificates": 0``). And it runs the
function's preparation once, recording the code libraries generate and compile as it loads
(``@dataclass`` and attrs methods, namedtuples, string annotations), into
``cloudroi/_codecache.marshal`` (``cloudroi.service.codecache``), and the regular expressions
modules compile, into ``cloudroi/_patterncache.marshal`` (``cloudroi.service.patterncache``):
from the staged package, or,
when that cannot run on the build machine (a cross build), from the byte-code Python's own
environment with this tree's cloudroi; skipped with a warning when neither runs.
It writes ``OUT/package/`` (what ``CodeUri`` can point at) and ``OUT/function.zip`` and prints
the unzipped and zipped sizes with the largest packages; it exits 1 when the unzipped size is
over the limit. The Lambda runtime provides the runtime client (awslambdaric) and
``snapshot_restore_py``; the ``lambda`` extra is therefore not installed unless asked for.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: Lambda's limit on a function's unzipped deployment package (layers included), in bytes.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
PYTHON_VERSION = "3.12"  # SnapStart needs Python 3.12 or later; template-zip.yaml's Runtime
PLATFORMS = {
    # Lambda's Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34)
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"],
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"],
}
#: Directories inside packages that nothing imports at run time.
DROP_DIRS = {"__pycache__", "tests", "testing_data"}
#: ...except these (``numpy.testing`` is a module numpy's own import needs; ``tests`` packages
#: that other code imports would go here).
KEEP_DIRS = {"numpy/testing"}
DROP_PATHS = ("bin", "numpy/_core/include", "numpy/_core/lib", "numpy/f2py/tests")
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----[ \t]*\r?\n.+?-----END CERTIFICATE-----", re.S)


def service_module(name: str) -> Any:
    """``cloudroi.service.<name>`` of this tree, loaded on its own (trust, codecache and
    patterncache use the standard library only), for the names the function looks for."""
    where = ROOT / "cloudroi" / "service" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_{name}", where)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project() -> dict[str, Any]:
    doc: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return doc


def requirements(extras: list[str]) -> list[str]:
    proj = project()
    reqs = list(proj["dependencies"])
    for extra in extras:
        reqs += proj["optional-dependencies"][extra]
    return reqs


def copy_cloudroi(target: Path, extras: list[str]) -> None:
    """The package from this source tree (no byte code) and a dist-info with its version."""
    shutil.copytree(
        ROOT / "cloudroi",
        target / "cloudroi",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    proj = project()
    info = target / f"cloudroi-{proj['version']}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", "Name: cloudroi", f"Version: {proj['version']}"]
    lines += [f"Requires-Dist: {r}" for r in requirements(extras)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "top_level.txt").write_text("cloudroi\n")


def pip_install(target: Path, extras: list[str], arch: str, python: str) -> None:
    platforms = [arg for p in PLATFORMS[arch] for arg in ("--platform", p)]
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        *platforms,
        *requirements(extras),
    ]
    subprocess.run(argv, check=True, timeout=1800)


def closure(extras: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions cloudroi[extras] needs, transitively (this environment)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(Requirement(r), frozenset[str]()) for r in requirements(extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, _ = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        if name == "cloudroi":
            continue  # copied from the source tree
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise SystemExit(f"{name} is required but not installed here") from exc
        found[name] = dist
        for text in dist.requires or ():
            sub = Requirement(text)
            wanted = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((sub, frozenset(sub.extras)))
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def copy_installed(target: Path, extras: list[str]) -> None:
    for dist in closure(extras):
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or not source.is_file():
                continue  # scripts in bin/, headers elsewhere: outside site-packages
            dest = target / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)


def strip(target: Path) -> None:
    for path in DROP_PATHS:
        victim = target / path
        if victim.is_dir():
            shutil.rmtree(victim)
    for directory in sorted(target.rglob("*"), reverse=True):
        rel = directory.relative_to(target).as_posix()
        if directory.is_dir() and directory.name in DROP_DIRS and rel not in KEEP_DIRS:
            shutil.rmtree(directory, ignore_errors=True)
    for file in target.rglob("*"):
        if file.suffix in (".pyc", ".pyi") or file.name in ("RECORD", "INSTALLER", "REQUESTED"):
            file.unlink()


def ca_bundle(target: Path, given: Path | None) -> Path | None:
    """The CA bundle the function's aiohttp trusts: ``--ca-bundle``, else certifi's (the
    package's own copy, else this interpreter's), else None."""
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--ca-bundle {given}: not a file")
        return given
    if (target / "certifi" / "cacert.pem").is_file():
        return target / "certifi" / "cacert.pem"
    try:
        return Path(importlib.import_module("certifi").where())
    except ImportError:
        return None


def subject_hash(pem: bytes, openssl: str) -> str:
    done = subprocess.run(
        [openssl, "x509", "-noout", "-subject_hash"], input=pem, capture_output=True, timeout=60
    )
    digest = done.stdout.decode().strip()
    if done.returncode or not re.fullmatch(r"[0-9a-f]{8}", digest):
        raise SystemExit(f"openssl x509 -subject_hash failed: {done.stderr.decode()[-2000:]}")
    return digest


def write_ca_dir(target: Path, bundle: Path, openssl: str) -> int:
    """The bundle as an OpenSSL hashed directory at the package's top (``cloudroi-ca/``, what
    cloudroi.service.trust looks for): one PEM per certificate named ``<subject hash>.<n>``.
    Every PEM block of the bundle must be a certificate (a ``TRUSTED CERTIFICATE`` or a damaged
    block stops the build rather than being left out). Returns the number of certificates."""
    where = target / service_module("trust").CA_DIR_NAME
    where.mkdir()
    data = bundle.read_bytes()
    certs = PEM_CERT.findall(data)
    blocks = data.count(b"-----BEGIN ")
    if not certs or len(certs) != blocks:
        raise SystemExit(
            f"CA bundle {bundle}: {blocks} PEM blocks, {len(certs)} of them certificates "
            "this build reads (one '-----BEGIN CERTIFICATE-----' block each)"
        )
    for pem in certs:
        digest = subject_hash(pem + b"\n", openssl)
        n = 0
        while (where / f"{digest}.{n}").exists():
            n += 1
        (where / f"{digest}.{n}").write_bytes(pem + b"\n")
    return len(certs)


def package_trust(target: Path, args: argparse.Namespace) -> tuple[int, str | None]:
    """The CA directory: (number of certificates, the bundle they came from), or (0, None)
    with a warning when it cannot be made. A ``--ca-bundle`` that cannot be honoured stops the
    build."""
    bundle = ca_bundle(target, args.ca_bundle)
    openssl = shutil.which("openssl")
    if openssl is None and args.ca_bundle is not None:
        raise SystemExit("--ca-bundle needs the openssl command (openssl x509 -subject_hash)")
    if bundle is None or openssl is None:
        print(
            "warning: no CA directory (needs certifi or --ca-bundle, and the openssl command): "
            "each cold start parses the runtime's CA bundle twice (about 90 ms)",
            file=sys.stderr,
        )
        return 0, None
    return write_ca_dir(target, bundle, openssl), str(bundle)


def bytecode_python(args: argparse.Namespace) -> str | None:
    """The interpreter that compiles the byte code: one of the target's Python version, else
    None."""
    if args.from_env:
        return sys.executable
    python = args.compile_with or shutil.which(f"python{args.python_version}")
    if python is None:
        return None
    try:
        probe = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        probe = None
    found = probe.stdout.strip() if probe is not None else "not runnable"
    if found == args.python_version:
        return python
    if args.compile_with:  # asked for by name: wrong byte code must not ship unnoticed
        raise SystemExit(
            f"--compile-with {python}: Python {found}, not {args.python_version} (--python-version)"
        )
    return None


def compile_bytecode(target: Path, python: str) -> None:
    """``__pycache__`` for every module of the tree, hash-based and unchecked."""
    argv = [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    done = subprocess.run([*argv, str(target)], timeout=1800, capture_output=True, text=True)
    if done.returncode:  # compileall names the files it could not compile on stdout
        raise SystemExit(f"byte code failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")


RECORD_CODE = """
import os, site, sys
from cloudroi.service import patterncache
with patterncache.record() as patterns:
    from cloudroi.service import codecache  # (which compiles a pattern)
    with codecache.record() as table:
        for where in sys.argv[2:]:  # a build environment's site directories, with their .pth
            site.addsitedir(where)
        import cloudroi.serverless
        from cloudroi.service.snapstart import prepare
        prepare()
codecache.write(table, sys.argv[1])
where = os.path.join(os.path.dirname(sys.argv[1]), patterncache.TABLE_NAME)
print(patterncache.write(patterns, where), len(table))
"""


def _record(argv: list[str], cwd: Path, pythonpath: str) -> tuple[tuple[int, int], str]:
    """Run RECORD_CODE: ((patterns, texts), "") or ((0, 0), what went wrong)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SSL_CERT"))}
    env.update({"PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return (0, 0), "it did not finish in 600 s"
    counts = done.stdout.split()[-2:]
    if done.returncode or len(counts) != 2 or not all(c.isdigit() for c in counts):
        return (0, 0), done.stderr[-1500:]
    return (int(counts[0]), int(counts[1])), ""


def site_packages(python: str) -> list[str]:
    """The site directories of ``python``'s environment (the user's too, where it has one)."""
    code = (
        "import os, site\n"
        "user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []\n"
        "print(os.pathsep.join(d for d in site.getsitepackages() + user if os.path.isdir(d)))"
    )
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [p for p in done.stdout.strip().split(os.pathsep) if p] if done.returncode == 0 else []


def record_code_cache(target: Path, python: str) -> tuple[tuple[int, int], str | None]:
    """``cloudroi/_codecache.marshal`` and ``cloudroi/_patterncache.marshal``: the function's
    preparation (every endpoint's modules) run once by ``python``, recording the code that
    libraries generate and the regular expressions modules compile (cloudroi.service.codecache,
    cloudroi.service.patterncache).
    First from the package, as Lambda runs it; when the package cannot run here (another
    architecture), from ``python``'s own environment with this source tree's cloudroi (the
    texts are cloudroi's classes as that Python's dataclasses writes them; a dependency of
    another version there only costs its texts). Returns ((patterns, texts), where recorded),
    ((0, 0), None) with a warning when neither runs."""
    table = target / "cloudroi" / service_module("codecache").TABLE_NAME
    patterns = target / "cloudroi" / service_module("patterncache").TABLE_NAME
    argv = [python, "-S", "-c", RECORD_CODE, str(table)]
    count, problem = _record(argv, target, str(target))
    if count[1]:
        return count, "package"
    # -S as the function runs (site would import modules before the recording, and their
    # generated code would be missed), the site directories added while recording
    count, problem_here = _record([*argv, *site_packages(python)], ROOT, str(ROOT))
    if count[1]:
        return count, "build environment"
    table.unlink(missing_ok=True)
    patterns.unlink(missing_ok=True)
    print(
        "warning: no compiled-code table: the package does not run here (build on the target "
        f"architecture), nor does cloudroi in {python}'s environment:\n{problem}\n{problem_here}",
        file=sys.stderr,
    )
    return (0, 0), None


def sizes(target: Path) -> tuple[int, list[tuple[str, int]]]:
    """Total bytes of the tree, and bytes per top-level entry (dist-infos with their package)."""
    per: dict[str, int] = {}
    total = 0
    for file in target.rglob("*"):
        if file.is_file():
            size = file.stat().st_size
            total += size
            top = file.relative_to(target).parts[0]
            top = re.sub(r"-[^-]+\.dist-info$", "", top)
            per[top] = per.get(top, 0) + size
    return total, sorted(per.items(), key=lambda kv: -kv[1])


def write_zip(target: Path, out: Path, level: int) -> int:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for file in sorted(target.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(target).as_posix())
    return out.stat().st_size


def build(args: argparse.Namespace) -> dict[str, Any]:
    extras = [e for e in args.extras.split(",") if e]
    out: Path = args.out
    package = out / "package"
    if package.exists():
        shutil.rmtree(package)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staging = Path(tmp) / "package"
        staging.mkdir()
        if args.from_env:
            copy_installed(staging, extras)
        else:
            pip_install(staging, extras, args.arch, args.python_version)
        copy_cloudroi(staging, extras)
        strip(staging)
        certificates, trusted = package_trust(staging, args)
        python = None if args.no_bytecode else bytecode_python(args)
        (patterns, code_texts), recorded = (0, 0), None
        if python is not None:
            compile_bytecode(staging, python)
            (patterns, code_texts), recorded = record_code_cache(staging, python)
        elif not args.no_bytecode:
            print(
                f"warning: no Python {args.python_version} to compile byte code with "
                "(--compile-with): the function will compile its modules on every cold start",
                file=sys.stderr,
            )
        staging.rename(package)
    unzipped, per_package = sizes(package)
    zipped = write_zip(package, out / "function.zip", args.zip_level)
    return {
        "extras": extras,
        "platform": "host" if args.from_env else args.arch,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}"
        if args.from_env
        else args.python_version,
        "bytecode": python is not None,
        "ca_certificates": certificates,
        "ca_bundle": trusted,
        "code_cache_texts": code_texts,
        "code_cache_from": recorded,
        "pattern_cache_patterns": patterns,
        "unzipped_bytes": unzipped,
        "zipped_bytes": zipped,
        "limit_bytes": LAMBDA_UNZIPPED_LIMIT,
        "largest": per_package[:10],
        "zip": str(out / "function.zip"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--extras", default="s3,geo", help="comma-separated extras (default s3,geo)")
    ap.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    ap.add_argument("--python-version", default=PYTHON_VERSION)
    ap.add_argument("--from-env", action="store_true", help="copy from this environment")
    ap.add_argument("--compile-with", help="a Python of --python-version for the byte code")
    ap.add_argument("--no-bytecode", action="store_true", help="ship sources only")
    ap.add_argument("--ca-bundle", type=Path, help="PEM bundle to trust (default: certifi's)")
    ap.add_argument("--out", type=Path, default=HERE / ".build")
    ap.add_argument("--zip-level", type=int, default=6, help="deflate level, 1-9 (default 6)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    report = build(args)
    mib = 1024 * 1024
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['zip']}: extras [{','.join(report['extras'])}], {report['platform']}, "
            f"Python {report['python']}: {report['unzipped_bytes'] / mib:.1f} MiB unzipped, "
            f"{report['zipped_bytes'] / mib:.1f} MiB zipped"
            + ("" if report["bytecode"] else " (no byte code)")
        )
        for name, size in report["largest"]:
            print(f"  {name:32s} {size / mib:7.1f} MiB")
    if report["unzipped_bytes"] > LAMBDA_UNZIPPED_LIMIT:
        print(
            f"over Lambda's limit of {LAMBDA_UNZIPPED_LIMIT / mib:.0f} MiB unzipped",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
