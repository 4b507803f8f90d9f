"""What the baseline runners share: options, the check against expected.txt, the JSON line.

Stdlib only: it is imported by runners in the project's venv and in Scrapy's own venv.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urldefrag, urlsplit


def arg_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("seeds", type=Path, help="file with one seed URL per line")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight overall")
    ap.add_argument("--per-host", type=int, default=4, help="requests in flight per host")
    ap.add_argument("--expected", type=Path, help="default: expected.txt beside the seeds file")
    return ap


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def expected_file(args: argparse.Namespace) -> Path:
    path: Path = args.expected or args.seeds.with_name("expected.txt")
    return path


def report(
    name: str, seconds: float, fetched: Iterable[str], expected: Path, **extra: object
) -> None:
    """Print the runner's one JSON line: pages fetched with status 200, time, correctness."""
    urls = [urldefrag(u)[0] for u in fetched]
    unique = set(urls)
    wanted = set(read_lines(expected))
    line = {
        "name": name,
        "pages": len(urls),
        "seconds": round(seconds, 3),
        "fetched_expected": len(unique & wanted),
        "expected": len(wanted),
        "unexpected": len(unique - wanted),
        "private_fetched": sum(urlsplit(u).path.startswith("/private/") for u in unique),
        "duplicates": len(urls) - len(unique),
        **extra,
    }
    print(json.dumps(line), flush=True)
