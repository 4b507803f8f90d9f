"""`netbytes`: any bytes from the network become valid UTF-8 text, and come back exactly."""

from __future__ import annotations

import random

import pytest

from crawler.netbytes import original_bytes, original_text, safe_text


def decoded(raw: bytes) -> str:
    """What aiohttp makes of header bytes (both its parsers)."""
    return raw.decode("utf-8", "surrogateescape")


def assert_storable(text: str) -> None:
    """SQLite and a PostgreSQL `text` column both take it: valid UTF-8, no NUL."""
    text.encode("utf-8")  # raises on any lone surrogate
    assert "\x00" not in text


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        pytest.param(b"text/html", "text/html", id="ascii"),
        pytest.param("café ☃".encode(), "café ☃", id="utf8-kept"),
        pytest.param(b"text/html; charset=\xe9", r"text/html; charset=\xe9", id="latin1-byte"),
        pytest.param(b"a\\b", r"a\\b", id="backslash"),
        pytest.param(b"\\xe9", r"\\xe9", id="backslash-looks-like-escape"),
        pytest.param(b"a\x00b", r"a\x00b", id="nul"),
        pytest.param(b"\xed\xa0\x80", r"\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(b"\xff\xfe", r"\xff\xfe", id="two-bytes"),
        pytest.param(b"a\x01\x7f\tb", "a\x01\x7f\tb", id="controls-kept"),
        pytest.param(b"", "", id="empty"),
    ],
)
def test_bytes_are_stored_as(raw: bytes, stored: str) -> None:
    assert safe_text(decoded(raw)) == stored
    assert original_bytes(stored) == raw


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        pytest.param("\ud800", r"\ud800", id="high-surrogate"),
        pytest.param("x\udfff", r"x\udfff", id="low-surrogate"),
        pytest.param("\udc41", r"\udc41", id="surrogate-below-escape-range"),
        pytest.param("\udce9", r"\xe9", id="escape-range-is-a-byte"),
    ],
)
def test_other_lone_surrogates(text: str, stored: str) -> None:
    """From an exception message, say: escaped too, and they round-trip as text."""
    assert safe_text(text) == stored
    assert original_text(stored) == text


@pytest.mark.parametrize(
    "legacy",
    [
        pytest.param(r"C:\temp\new", id="windows-path"),
        pytest.param(r"\x41 \q \u0041 \udce9 \xZZ trailing\ ", id="never-written-escapes"),
    ],
)
def test_sequences_safe_text_never_writes_read_back_literally(legacy: str) -> None:
    """Text stored before the escaping existed still exports as it was."""
    assert original_text(legacy) == legacy


def test_plain_ascii_is_returned_as_it_is() -> None:
    value = "text/html; charset=utf-8"
    assert safe_text(value) is value


def random_bytes(rng: random.Random) -> bytes:
    """Mostly the troublesome bytes: backslash, NUL, x, hex digits, UTF-8 lead/continuation."""
    alphabet = b"\\\x00xu0e9dcaf\x80\xbf\xc3\xa9\xe2\x98\x83\xed\xa0\xf0\x9f\xff \t\x01"
    n = rng.randrange(0, 24)
    if rng.random() < 0.5:
        return bytes(rng.choice(alphabet) for _ in range(n))
    return rng.randbytes(n)


def test_any_bytes_round_trip_and_store() -> None:
    rng = random.Random(20240501)
    seen: set[str] = set()
    for _ in range(20_000):
        raw = random_bytes(rng)
        stored = safe_text(decoded(raw))
        assert_storable(stored)
        assert original_bytes(stored) == raw, raw
        seen.add(stored)
    assert len(seen) > 5_000  # the loop did explore


def test_any_text_round_trips_and_stores() -> None:
    """Arbitrary code points, lone surrogates included: injective on all of `str`."""
    rng = random.Random(7)
    pool = ["\\", "\x00", "x", "u", "d", "e", "9", "é", "☃", "\U0001f600"]
    for _ in range(20_000):
        text = "".join(
            rng.choice(pool) if rng.random() < 0.6 else chr(rng.randrange(0xD700, 0xE100))
            for _ in range(rng.randrange(0, 16))
        )
        stored = safe_text(text)
        assert_storable(stored)
        assert original_text(stored) == text, repr(text)
