"""What the Lambda zip ships for its cold start, each tested on its own: the hashed CA directory
(cloudroi.service.trust, build_zip.write_ca_dir), the table of dataclass code
(cloudroi.service.codecache) and the version read beside the package (cloudroi._sibling_version).
The built package as a whole is tested in test_deploy.py."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cloudroi
from benchmarks.lambda_cold import LAMBDA_UNSET
from cloudroi.cog import write_cog
from cloudroi.service import codecache, patterncache, trust
from cloudroi.testing import RangeServer

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAMBDA_UNSET}  # as on Lambda
    env.update(extra)
    return env


def run_child(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(**env),
        cwd=ROOT,
    )


# -- the CA directory ----------------------------------------------------------------------


def load_build_zip() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_zip", ROOT / "deploy" / "aws-sam" / "build_zip.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_ca(name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(ca: tuple[Any, Any], tmp: Path) -> ssl.SSLContext:
    """A server context for 127.0.0.1 with a certificate ``ca`` signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp / "leaf.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile = tmp / "leaf.key"
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, keyfile)
    return ctx


def pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return data


def ca_dir(tmp: Path, name: str, *certs: Any) -> Path:
    """An OpenSSL hashed directory of ``certs`` made the way build_zip.py makes the package's."""
    build_zip = load_build_zip()
    bundle = tmp / f"{name}.pem"
    bundle.write_bytes(b"".join(pem(c) for c in certs))
    staging = tmp / name
    staging.mkdir()
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command builds the CA directory (.ci/run has it)"
    assert build_zip.write_ca_dir(staging, bundle, openssl) == len(certs)
    where = staging / trust.CA_DIR_NAME
    assert len(list(where.iterdir())) == len(certs)
    return where


READ_HTTPS = """
import asyncio, json, os, sys
from cloudroi.service.trust import use_packaged_ca
used = use_packaged_ca(sys.argv[1])
import aiohttp  # its default TLS contexts are made here, from what use_packaged_ca chose
from aiohttp import connector
import cloudroi

async def main():
    try:
        async with await cloudroi.open(sys.argv[2]) as img:
            data = await img.read((0, 0, 32, 32))
        return {"sum": int(data.sum())}
    except cloudroi.CloudROIError as exc:
        return {"error": type(exc).__name__, "detail": str(exc)}

contexts = (connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED)
# a hashed directory is read on demand: a context made from it holds no CA up front (from a
# bundle file it holds every one); after the handshake, the one it looked up
loaded = [len(c.get_ca_certs()) for c in contexts]
out = asyncio.run(main())
out.update(
    used=used,
    loaded=loaded,
    after=len(contexts[0].get_ca_certs()),
    env=sorted(k for k in os.environ if k.startswith("SSL_CERT")),
    again=use_packaged_ca(sys.argv[1]),
)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("tls")
    ca = make_ca("cloudroi test root")
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    server = RangeServer({"a.tif": write_cog(data, tile=32)}, ssl_context=make_leaf(ca, tmp))
    with server:
        yield server, ca, tmp, int(data[:32, :32].sum())


def test_packaged_ca_directory_verifies_https(tls_server: Any) -> None:
    """A fresh process whose aiohttp contexts load only the hashed directory reads a COG over
    HTTPS from a server whose CA is in it, and is refused, with a typed error, by one whose CA
    is not; the variables are gone once aiohttp is loaded, and no bundle was parsed."""
    server, ca, tmp, expected = tls_server
    good = ca_dir(tmp, "good", make_ca("another root")[0], ca[0])
    done = run_child(READ_HTTPS, str(good), server.url("a.tif"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out == {
        "sum": expected,
        "used": True,
        "loaded": [0, 0],
        "after": 1,
        "env": [],
        "again": False,
    }

    stranger = ca_dir(tmp, "stranger", make_ca("cloudroi test root")[0])  # same name, other key
    done = run_child(READ_HTTPS, str(stranger), server.url("a.tif"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert "sum" not in out
    assert "certificate" in out["detail"].lower(), out
    assert out["loaded"] == [0, 0]

    # without the directory aiohttp loads the default bundle file (what the directory spares)
    done = run_child(READ_HTTPS, str(tmp / "absent"), server.url("a.tif"))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["used"] is False
    assert "sum" not in out
    if os.path.isfile(ssl.get_default_verify_paths().openssl_cafile):
        assert min(out["loaded"]) > 50  # the system's bundle, parsed into each context


CHOSEN_STORE = """
import json, os, sys
from cloudroi.service.trust import use_packaged_ca
print(json.dumps([use_packaged_ca(sys.argv[1]), "aiohttp.connector" in sys.modules]))
"""


def test_use_packaged_ca_leaves_a_chosen_trust_store_alone(tmp_path: Path) -> None:
    for env in ({"SSL_CERT_FILE": "/etc/mine.pem"}, {"SSL_CERT_DIR": "/etc/certs"}):
        done = run_child(CHOSEN_STORE, str(tmp_path), **env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout) == [False, False]
    done = run_child(CHOSEN_STORE, str(tmp_path))
    assert json.loads(done.stdout) == [True, False]
    # in this process aiohttp is loaded already: too late, nothing is arranged
    assert "aiohttp.connector" in sys.modules
    assert trust.use_packaged_ca(str(tmp_path)) is False
    # and the source tree has no directory
    assert not Path(trust.packaged_ca_dir()).exists()


def test_trusted_while_restores_the_environment() -> None:
    env = {"SSL_CERT_FILE": "/etc/mine.pem", "OTHER": "x"}
    with trust.trusted_while("/ca", env):
        assert env["SSL_CERT_DIR"] == "/ca"
        assert env["SSL_CERT_FILE"] == os.path.join("/ca", trust.NO_BUNDLE_NAME)
    assert env == {"SSL_CERT_FILE": "/etc/mine.pem", "OTHER": "x"}


def test_write_ca_dir_names_files_by_subject_hash(tmp_path: Path) -> None:
    """Two certificates with one subject share a hash: ``.0`` and ``.1``. A bundle with a
    block this build would leave out, or none at all, stops the build."""
    first, second = make_ca("twin")[0], make_ca("twin")[0]
    where = ca_dir(tmp_path, "twins", first, second)
    hashed = sorted(p.name for p in where.iterdir())
    digest = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash"],
        input=pem(first),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert hashed == [f"{digest.strip()}.0", f"{digest.strip()}.1"]
    assert {(where / n).read_bytes() for n in hashed} == {pem(first), pem(second)}

    build_zip = load_build_zip()
    spaced = tmp_path / "spaced.pem"  # trailing blanks after BEGIN, CRLF lines: still read
    spaced.write_bytes(pem(first).replace(b"-----\n", b"-----  \n", 1).replace(b"\n", b"\r\n"))
    (tmp_path / "s").mkdir()
    assert build_zip.write_ca_dir(tmp_path / "s", spaced, "openssl") == 1
    trusted = pem(second).replace(b"CERTIFICATE", b"TRUSTED CERTIFICATE")
    for name, data in (("empty", b"no certificate here\n"), ("mixed", pem(first) + trusted)):
        bundle = tmp_path / f"{name}.pem"
        bundle.write_bytes(data)
        (tmp_path / name).mkdir()
        with pytest.raises(SystemExit, match="PEM blocks"):
            build_zip.write_ca_dir(tmp_path / name, bundle, "openssl")


# -- the dataclass code table --------------------------------------------------------------

CLASSES = """
from __future__ import annotations
import dataclasses
from collections import namedtuple
from dataclasses import InitVar, dataclass, field
from typing import ClassVar, ForwardRef, TypedDict

import attr

@dataclass(frozen=True, order=True)
class Point:
    x: int
    y: int = 2
    tags: tuple[str, ...] = ()

@dataclass(slots=True, kw_only=True)
class Box:
    lo: float
    hi: float = field(default=1.0, repr=False)
    names: list[str] = field(default_factory=list)
    seen: ClassVar[int] = 0
    scale: InitVar[float] = 1.0

    def __post_init__(self, scale):
        self.hi *= scale

@dataclass(unsafe_hash=True)
class Key:
    a: str
    b: bytes = b""

@attr.s(auto_attribs=True, frozen=True, slots=True)
class Span:  # attrs: __init__, __repr__, __eq__ and a __hash__ with a per-process number
    start: int
    stop: int = attr.ib(default=5, converter=int)

@attr.s(frozen=True, cache_hash=True)
class Named:
    name = attr.ib()

@attr.s(frozen=True)
class Empty:  # no field hashed: attrs' hash((n,)) is folded to a tuple constant
    pass

@attr.s(frozen=True, cache_hash=True)
class Unhashed:
    note = attr.ib(eq=False)

@attr.s(frozen=True)
class Again:
    a = attr.ib()

First = Again

@attr.s(frozen=True)
class Again:  # the same name, another text: attrs files it as "<... Again-1>"
    b = attr.ib()
    c = attr.ib(default=0)

@dataclass
class Twin1:
    v: int

@dataclass
class Twin2:  # the same method texts as Twin1's
    v: int

Pair = namedtuple("Pair", "left right")

class Doc(TypedDict, total=False):  # string annotations: typing compiles each (ForwardRef)
    title: str
    pages: list[int]

REF = ForwardRef("dict[str, list[Pair]]")

import typing_inspection.typing_objects  # pydantic's type checks, compiled when imported
"""

EXERCISE = """
import json, sys
from cloudroi.service import codecache
count = codecache.install(sys.argv[1]) if sys.argv[1] != "-" else 0
import attr, typing  # before the spies: attrs' own classes are compiled as it is imported
compiled = []
import builtins
real = {name: getattr(builtins, name) for name in ("compile", "exec", "eval")}
def spy(name):  # compile(text), and exec/eval(text) which compile it too
    def call(source, *a, **k):
        compiled.append(source if isinstance(source, str) else "<code>")
        return real[name](source, *a, **k)
    return call
import types
module = sys.modules["classes"] = types.ModuleType("classes")
source = real["compile"](sys.argv[2], "classes.py", "exec", dont_inherit=True)
for name in real:  # from here on: what the classes compile
    setattr(builtins, name, spy(name))
real["exec"](source, module.__dict__)
for name in real:
    setattr(builtins, name, real[name])
ns = module.__dict__
Point, Box, Key = ns["Point"], ns["Box"], ns["Key"]
Span, Named, Pair = ns["Span"], ns["Named"], ns["Pair"]
p, q = Point(1), Point(1, 3, ("a",))
try:
    p.x = 5
    frozen = "no"
except Exception as exc:
    frozen = type(exc).__name__
b = Box(lo=0.5, hi=2.0, scale=3.0)
s = Span(1, "7")
print(json.dumps({
    "count": count,
    "compiled": sum(1 for c in compiled if c != "<code>"),
    "texts": [c[:200] for c in compiled if c != "<code>"],
    "repr": [repr(x) for x in (p, q, b, Key("k"), s, Named("n"), Pair(1, 2))],
    "eq": [p == Point(1), p < q, hash(p) == hash(Point(1)), hash(Key("k")) == hash(Key("k"))],
    "hash": [hash(s), hash(Named("n")), hash(Pair(1, 2)), hash(ns["Empty"]()),
             hash(ns["Unhashed"]("x")), hash(ns["First"](1)), hash(ns["Again"](1, 2))],
    "own code": ns["Twin1"].__init__.__code__ is not ns["Twin2"].__init__.__code__,
    "attrs": [s == Span(1, 7), s.stop, attr.evolve(s, start=2).start],
    "frozen": frozen,
    "box": [b.lo, b.hi, b.names, hasattr(b, "__dict__")],
    "annotations": {k: str(v) for k, v in Point.__init__.__annotations__.items()},
    "typed": {k: str(v) for k, v in ns["Doc"].__annotations__.items()},
    "ref": str(typing._eval_type(ns["REF"], ns, ns)),
    "kwonly": Box.__init__.__kwdefaults__ is not None,
}))
"""


def test_codecache_table_builds_the_same_classes_without_compiling(tmp_path: Path) -> None:
    """Recorded once, the table serves every text the classes' libraries generate in a fresh
    process: frozen, ordered, slotted, kw-only and InitVar dataclasses, attrs classes (whose
    hash holds a number that differs from process to process: recorded with another hash seed;
    with no field hashed, cached, and a name defined twice), a namedtuple, string annotations of
    a TypedDict and a ForwardRef, typing-inspection's checks. Nothing is compiled, everything
    behaves as when built without it (repr, eq, order, hashes, frozen, defaults, annotations),
    and two classes with the same method texts still get code objects of their own."""
    pytest.importorskip("typing_inspection")
    table = tmp_path / "table.marshal"
    record = (
        "import sys, types\n"
        "from cloudroi.service import codecache\n"
        "import attr, typing\n"
        "module = sys.modules['classes'] = types.ModuleType('classes')\n"
        "with codecache.record() as t:\n"
        "    exec(compile(sys.argv[2], 'classes.py', 'exec', dont_inherit=True), module.__dict__)\n"
        "    typing._eval_type(module.REF, vars(module), vars(module))\n"
        "codecache.write(t, sys.argv[1])\n"
        "print(len(t))\n"
    )
    done = run_child(record, str(table), CLASSES, PYTHONHASHSEED="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) >= 18

    # the same hash seed in both, so that their hashes compare
    plain = run_child(EXERCISE, "-", CLASSES, PYTHONHASHSEED="2")
    cached = run_child(EXERCISE, str(table), CLASSES, PYTHONHASHSEED="2")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert cached.returncode == 0, cached.stderr[-3000:]
    without, with_table = json.loads(plain.stdout), json.loads(cached.stdout)
    assert with_table["count"] == int(done.stdout)
    assert with_table["compiled"] == 0, with_table["texts"]
    assert without["compiled"] >= with_table["count"]  # each text compiled at class creation
    # attrs' hash, namedtuple's __new__, a string annotation and typing-inspection's checks
    # are among what the table holds
    for mark in ("def __hash__(self", "_tuple_new", "list[int]", "(obj: Any, /) -> bool"):
        assert any(mark in t for t in without["texts"]), mark
    for doc in (without, with_table):
        for name in ("count", "compiled", "texts"):
            doc.pop(name)
    assert with_table == without
    assert without["frozen"] == "FrozenInstanceError"
    assert without["attrs"] == [True, 7, 2]
    assert without["own code"] is True
    assert without["typed"]["pages"] == "ForwardRef('list[int]', module='classes')"


class _Text(str):
    """A str subclass (marshal refuses them: the shims pass them to the builtin)."""


def _shim_cases(compile_: Any, eval_: Any, exec_: Any) -> list[Any]:
    """What each case gives through these three callables: called here, in a module with
    ``from __future__ import annotations``, whose flag compile inherits unless told not to."""
    import ast

    text = "def f(x: int) -> 'y':\n    return x + 1\n"
    ns: dict[str, Any] = {}
    exec_("def g(a, b=2):\n    return a * b\n", ns)
    exec_(_Text("h = 42"), ns)
    try:
        compile_("1 +", "<case>", "eval")
        syntax = ""
    except SyntaxError as exc:
        syntax = f"{exc.msg} {exc.lineno} {exc.offset}"
    inherited = compile_(text, "<case>", "exec")
    return [
        inherited,
        bool(inherited.co_flags & 0x1000000),  # CO_FUTURE_ANNOTATIONS
        compile_(text, "<case>", "exec", dont_inherit=True),
        compile_("(a, b)", "<case>", "eval", 0, True),
        eval_("  1 + 2\t"),  # eval drops leading blanks
        eval_("x * 2", {"x": 4}),
        eval_("lambda a, b: (a, b)", {})(1, 2),
        ns["g"](3),
        syntax,
        type(compile_(text, "<case>", "exec", ast.PyCF_ONLY_AST)).__name__,
        compile_(_Text("7"), "<case>", "eval"),
        eval_(_Text("7 * 6")),
        ns["h"],
    ]


def test_codecache_shims_compile_what_the_builtins_do(tmp_path: Path) -> None:
    """Recording (misses) and from a table (hits), each shim gives what its builtin gives: equal
    code objects with the caller's future flags (or not, with ``dont_inherit``), eval's leading
    blanks dropped, the same results, the same SyntaxError, an AST when asked, and a str
    subclass (which marshal would refuse) left to the builtin, so the table still writes."""
    import collections
    import dataclasses
    import typing

    want = _shim_cases(compile, eval, exec)
    assert want[1] is True  # this module's future import reached compile
    assert want[4:8] == [3, 8, (1, 2), 6]
    assert want[8].startswith("invalid syntax")

    def through_shims() -> list[Any]:
        return _shim_cases(
            vars(typing)["compile"], vars(collections)["eval"], vars(dataclasses)["exec"]
        )

    path = tmp_path / "cases.marshal"
    with codecache.record() as table:
        recorded = through_shims()
    assert codecache.write(table, str(path)) > 0
    assert not any(type(key[0]) is not str for key in table)
    try:
        assert codecache.install(str(path)) == len(table)
        served = through_shims()
    finally:
        codecache.uninstall()
    for got in (recorded, served):
        assert got == want
        assert [c.co_flags for c in got[0:4:2]] == [c.co_flags for c in want[0:4:2]]


def test_codecache_misses_compile_and_foreign_tables_are_refused(tmp_path: Path) -> None:
    """A text missing from the table is compiled as dataclasses would; a table of another
    Python (another magic number), a damaged one or none changes nothing."""
    import dataclasses
    import marshal

    other = tmp_path / "other.marshal"
    key = ("def f():\n return 1\n", "<string>", "exec", 0)
    codecache.write({key: compile(key[0], "<string>", "exec")}, str(other))
    try:
        assert codecache.install(str(other)) == 1
        assert codecache.installed()
        assert codecache.install(str(other)) == 0  # one at a time

        @dataclasses.dataclass(frozen=True)
        class Late:
            a: int
            b: str = "x"

        assert repr(Late(1)).endswith(".<locals>.Late(a=1, b='x')")
        assert Late(1) == Late(1)
        with pytest.raises(dataclasses.FrozenInstanceError):
            Late(1).a = 2  # type: ignore[misc]
    finally:
        codecache.uninstall()
    assert not codecache.installed()
    assert "exec" not in vars(dataclasses)
    for name, builtin in codecache.SITES.items():  # each site back on the builtin
        assert builtin not in vars(sys.modules.get(name, dataclasses)), name
    assert not [f for f in sys.meta_path if type(f).__module__.endswith("importhook")]

    foreign = tmp_path / "foreign.marshal"
    foreign.write_bytes(marshal.dumps((b"\x00\x00\r\n", {})))
    damaged = tmp_path / "damaged.marshal"
    damaged.write_bytes(b"\x00not marshal")
    empty = tmp_path / "empty.marshal"
    codecache.write({}, str(empty))
    not_code = tmp_path / "not-code.marshal"
    not_code.write_bytes(marshal.dumps((codecache._magic(), {key: "def f(): pass"})))
    for path in (foreign, damaged, empty, not_code, tmp_path / "absent.marshal"):
        assert codecache.install(str(path)) == 0
        assert not codecache.installed()
    # the source tree ships no table
    assert not Path(codecache.table_path()).exists()


# -- the version beside the package ---------------------------------------------------------


def test_sibling_version_reads_the_one_dist_info(tmp_path: Path) -> None:
    info = tmp_path / "cloudroi-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cloudroi\nVersion: 1.2.3\n\nVersion: 9.9.9 in the text\n"
    )
    (tmp_path / "cloudroi-ca").mkdir()  # the package's CA directory is not a dist-info
    assert cloudroi._sibling_version(str(tmp_path)) == "1.2.3"

    (tmp_path / "cloudroi-0.1.dist-info").mkdir()  # two: a stale install, ask importlib
    assert cloudroi._sibling_version(str(tmp_path)) is None

    other = tmp_path / "other"
    (other / "cloudroi-2.0.dist-info").mkdir(parents=True)
    (other / "cloudroi-2.0.dist-info" / "METADATA").write_text("Name: cloudroi\n\nVersion: 2.0\n")
    assert cloudroi._sibling_version(str(other)) is None  # not among the headers
    assert cloudroi._sibling_version(str(tmp_path / "absent")) is None
    # here (an editable install) there is none beside the package: importlib.metadata answers
    assert cloudroi._sibling_version() is None
    assert cloudroi.__version__ == __import__("importlib.metadata").metadata.version("cloudroi")


# -- the collector paused for a cold start ------------------------------------------------

GC_CHECK = """
import gc, json, sys
import cloudroi.serverless as s
from cloudroi.service import gcpause
before = [gc.isenabled(), gcpause.paused()]
response = s.handler("not an event")  # answered (a 400), and the collector is back
after = [gc.isenabled(), gcpause.paused(), response["statusCode"], gc.get_freeze_count() > 10000]
s.handler("again")
print(json.dumps([before, after, gc.isenabled()]))
"""


def test_gc_is_paused_under_a_lambda_runtime_until_the_first_answer() -> None:
    done = run_child(GC_CHECK, AWS_LAMBDA_RUNTIME_API="127.0.0.1:9")
    assert done.returncode == 0, done.stderr[-2000:]
    # what the cold start made is frozen, not walked by the first collection after it
    assert json.loads(done.stdout) == [[False, True], [True, False, 400, True], True]
    # elsewhere (tests, the service, the library) importing the handler changes nothing
    done = run_child(GC_CHECK)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [[True, False], [True, False, 400, False], True]


def test_a_package_that_cannot_run_here_records_from_the_build_environment(
    tmp_path: Path,
) -> None:
    """A cross build's package cannot run on the build machine (here: one without its
    dependencies): the table is recorded from the byte-code Python's own environment instead,
    with this tree's cloudroi, and written into the package. Its site directories are added
    while recording (the function runs without site): what their .pth files import is in it."""
    import importlib.util
    import marshal

    staged = tmp_path / "package"
    shutil.copytree(ROOT / "cloudroi", staged / "cloudroi", ignore=shutil.ignore_patterns("*.pyc"))
    extra = tmp_path / "site"  # a site directory whose .pth file imports a module
    extra.mkdir()
    (extra / "pthmod.py").write_text(
        "import collections\nPthPair = collections.namedtuple('PthPair', 'left_pth right_pth')\n"
    )
    (extra / "zz-cloudroi-test.pth").write_text("import pthmod\n")
    build_zip = load_build_zip()
    found = build_zip.site_packages(sys.executable)
    assert found
    build_zip.site_packages = lambda python: [*found, str(extra)]
    (patterns, count), where = build_zip.record_code_cache(staged, sys.executable)
    assert where == "build environment"
    assert count > 300
    magic, table = marshal.loads((staged / "cloudroi" / codecache.TABLE_NAME).read_bytes())
    assert magic == importlib.util.MAGIC_NUMBER + b"-O0"
    assert len(table) == count
    assert patterns > 100  # and the pattern table beside it
    re.purge()
    try:
        assert patterncache.install(str(staged / "cloudroi" / patterncache.TABLE_NAME)) == patterns
    finally:
        patterncache.uninstall()
    assert any("_tuple_new(_cls, (left_pth, right_pth))" in key[0] for key in table)
    assert not (ROOT / "cloudroi" / codecache.TABLE_NAME).exists()  # nothing in the tree


GC_AFTER = """
import gc, json, sys, weakref
import cloudroi.serverless as s

class Holder:
    pass

def garbage():
    a, b = Holder(), Holder()
    a.other, b.other, a.buffer = b, a, bytearray(1 << 20)
    return weakref.ref(a)

ref = garbage()  # an unreachable cycle holding a buffer, kept while the collector is paused
response = s.handler(json.loads(sys.argv[1]))
print(json.dumps([response["statusCode"], ref() is None, gc.isenabled()]))
"""


def test_an_error_answer_collects_before_the_heap_is_frozen() -> None:
    """After a first answer of 400 or more, the cycles of the cold start are collected before
    the freeze (a failed request's may hold its buffers); after a good one they are frozen."""
    event = json.loads((ROOT / "tests" / "events" / "function-url.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/healthz"
    event["rawQueryString"] = ""
    runtime = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}
    done = run_child(GC_AFTER, json.dumps("not an event"), **runtime)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [400, True, True]
    done = run_child(GC_AFTER, json.dumps(event), **runtime)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [200, False, True]


SNAPSHOT = """
import gc, json
import cloudroi.serverless
from cloudroi.service import gcpause, snapstart
before = [gc.isenabled(), gcpause.paused()]
snapstart.before_snapshot()
print(json.dumps([before, [gc.isenabled(), gcpause.paused(), gc.get_freeze_count() > 10000]]))
"""


def test_snapstart_init_resumes_the_collector() -> None:
    """A restored environment never runs with the collector paused: the before-snapshot hook
    collects, freezes and resumes it."""
    done = run_child(SNAPSHOT, AWS_LAMBDA_RUNTIME_API="127.0.0.1:9")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == [[False, True], [True, False, True]]


async def test_a_failed_read_lets_go_of_its_output() -> None:
    """A read that fails on an undecodable block leaves no output array in its traceback's
    frames (the traceback can sit in a reference cycle: the array would live until a full
    collection, or for ever after the cold start's freeze)."""
    data = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    cog = bytearray(write_cog(data, tile=64))
    async with cloudroi.open(bytes(cog)) as probe:
        level = probe.structure.levels[0]
        first = int(level.offsets.get([5])[0])
        count = int(level.byte_counts.get([5])[0])
    cog[first : first + count] = b"\xff" * count  # block 5 undecodable
    async with cloudroi.open(bytes(cog)) as img:
        with pytest.raises(cloudroi.CloudROIError) as failed:
            await img.read((0, 0, 256, 256))
    frames = []
    tb = failed.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    reads = [f for f in frames if f.f_code.co_filename.endswith(os.path.join("read", "reader.py"))]
    assert any(f.f_code.co_name == "read" for f in reads), [f.f_code.co_name for f in frames]
    assert all("out" not in f.f_locals for f in reads if f.f_code.co_name == "read")
