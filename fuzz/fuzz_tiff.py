"""Coverage-guided fuzzing of cloudroi's TIFF parsing and decoding with atheris (libFuzzer).

Each input is opened from memory and read (level 0, the last overview, the mask), exactly as the
hypothesis suite in tests/reliability/test_fuzz.py does; any exception other than a CloudROIError,
a case running past its time limit, or memory past libFuzzer's ``-rss_limit_mb`` is a finding.
See fuzz/README.md for how to run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests package, whose fuzz support this harness shares

with atheris.instrument_imports(include=["cloudroi"]):
    import cloudroi  # noqa: F401  (instrumented for coverage feedback)

from tests.reliability import fuzz_support  # noqa: E402


def write_seeds(directory: Path) -> None:
    """The valid corpus files (and their decompression bombs) as libFuzzer's starting corpus."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = fuzz_support.seeds()
    for name, data in seeds.items():
        (directory / f"{name}.tif").write_bytes(data)
    for name, bomb in fuzz_support.BOMBS.items():
        (directory / f"bomb-{name}.tif").write_bytes(
            fuzz_support.with_first_block(seeds[name], bomb())
        )


def test_one_input(data: bytes) -> None:
    # No tracemalloc here: libFuzzer's -rss_limit_mb bounds memory, -timeout bounds time.
    fuzz_support.run_case(data, trace=False)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
