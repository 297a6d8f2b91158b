"""README.md's examples run as written.

Every ```python block runs in a fresh interpreter, in an empty directory, with the 4096 x 4096
sample image where the README says it is (``~/.cache/cloudroi``, under a temporary HOME). Every
``cloudroi`` command line in a ```sh block uses options its subcommand has. The ```sh blocks
written against the sample (``$HOME/.cache/cloudroi/sample-dem.tif``) run in bash, with curl set
to fail on any HTTP error and the service on a free port instead of 8080; every file they write
with ``-o`` must be what its extension says. Network traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cloudroi.cli import build_parser
from cloudroi.sample import SAMPLE_NAME, ensure_sample

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SAMPLE_PATH = "$HOME/.cache/cloudroi/sample-dem.tif"
VENV = Path(sys.prefix)  # the tests run in the project's venv: its bin/cloudroi is the command


def fenced(language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(README.read_text()) if lang == language]


PYTHON_BLOCKS = fenced("python")
SH_BLOCKS = fenced("sh")
SAMPLE_BLOCKS = [b for b in SH_BLOCKS if SAMPLE_PATH in b]


def test_the_readme_has_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 1
    assert len(SAMPLE_BLOCKS) >= 2
    assert (VENV / "bin" / "cloudroi").exists()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home directory with the sample built where cloudroi looks for it, and a ``.curlrc``
    that makes curl fail (exit 22) on an HTTP error instead of saving the error body."""
    home = tmp_path_factory.mktemp("home")
    ensure_sample(home / ".cache" / "cloudroi" / SAMPLE_NAME)
    (home / ".curlrc").write_text("fail\nmax-time = 60\n")
    return home


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLOUDROI_SAMPLE_DIR", "XDG_CACHE_HOME", "CLOUDROI_ALLOWED_SOURCES")
        and not k.lower().endswith("_proxy")
    }
    env.update(
        HOME=str(home),
        PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        NO_PROXY="*",
        no_proxy="*",
        **extra,
    )
    return env


@pytest.mark.parametrize(
    "code", PYTHON_BLOCKS, ids=[f"python{i}" for i in range(len(PYTHON_BLOCKS))]
)
def test_python_block_runs(code: str, home: Path, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def command_lines(block: str) -> list[list[str]]:
    """The shell commands of a block as token lists: continuation lines joined, comments
    dropped, split at ``&&``, ``;``, ``|`` and ``&`` (but not at the ``|`` between
    alternatives in a synopsis' brackets, ``[--level N | --size W,H]``)."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        depth = 0
        for token in lexer:
            if token and set(token) <= set(";&|") and depth == 0:
                commands.append(current)
                current = []
                continue
            depth += sum(token.count(c) for c in "[(") - sum(token.count(c) for c in "])")
            current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("cloudroi's parser has no subcommands")


def test_cli_examples_use_existing_options() -> None:
    parser = build_parser()
    subcommands = _subcommands(parser)
    checked = 0
    for block in SH_BLOCKS:
        for tokens in command_lines(block):
            if Path(tokens[0]).name != "cloudroi":
                continue
            rest = tokens[1:]
            # the synopsis' "[--level N | --size W,H]" and "(--window ... | --bbox ...)"
            words = [w.strip("[]()") for w in rest]
            if words and words[0] in subcommands:
                known = subcommands[words[0]]._option_string_actions
            else:
                known = parser._option_string_actions
            for word in words:
                if word.startswith("-") and not word.lstrip("-").isdigit():
                    assert word in known, f"{word} in README line: {shlex.join(tokens)}"
            checked += 1
    assert checked >= 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".webp": (b"RIFF",),
    ".tif": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    ".npy": (b"\x93NUMPY",),
}


@pytest.mark.parametrize("block", SAMPLE_BLOCKS, ids=[f"sh{i}" for i in range(len(SAMPLE_BLOCKS))])
def test_sample_sh_block_runs(block: str, home: Path, tmp_path: Path) -> None:
    assert not re.search(r"pip install|docker|kubectl|\bsam\b", block)
    port = free_port()
    script = block.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    (tmp_path / ".venv").symlink_to(VENV)  # for the README's ".venv/bin/cloudroi"
    # Whatever the block starts in the background is stopped when it ends.
    wrapped = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    proc = subprocess.Popen(
        ["bash", "-c", wrapped],
        cwd=tmp_path,
        start_new_session=True,
        env=environment(home, CLOUDROI_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        # The block's own process group: bash and anything it left behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"{out}\n{err}"
    outputs = [
        tokens[i + 1]
        for tokens in command_lines(block)
        for i, t in enumerate(tokens[:-1])
        if t in ("-o", "--output") and tokens[i + 1] != "/dev/null"
    ]
    assert outputs
    for name in outputs:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(_MAGIC[Path(name).suffix]), f"{name}: {data[:80]!r}"
        if name.endswith(".npy"):
            assert np.load(tmp_path / name).size > 0
