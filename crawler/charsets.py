"""Which codec an HTML body is decoded with, as browsers decide (the HTML Standard's encoding
sniffing, the WHATWG Encoding Standard's labels).

A byte-order mark beats the Content-Type header, which beats a ``<meta>`` declaration near the
top; a ``<meta>`` found later is the parser's business (`declared_charset` on its tree). Labels
are read through the WHATWG table, so a page that says "iso-8859-1" is decoded as the
windows-1252 every browser actually uses. A non-ASCII href only resolves to the URL a browser
would request when its bytes were decoded the way the browser decoded them.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["charset_of", "declared_charset", "sniff"]


# The WHATWG Encoding Standard's label table (https://encoding.spec.whatwg.org/#names-and-labels),
# keyed by the Python codec that decodes like a browser does. Where the two disagree the browser
# wins: Shift_JIS is decoded as cp932 (Python's shift_jis rejects the NEC/IBM rows, e.g. "①",
# and maps 0x8160 to U+301C where Windows and browsers give U+FF5E), GBK as its superset GB18030,
# EUC-KR as cp949, Big5 as Big5-HKSCS, and ISO-8859-1/ASCII as windows-1252. The "replacement"
# labels (iso-2022-kr, hz-gb-2312...) are left out: they fall back to UTF-8 like unknown ones.
_ENCODINGS = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "ibm866": "866 cp866 csibm866 ibm866",
    "iso-8859-2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
    "iso_8859-2:1987 l2 latin2",
    "iso-8859-3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
    "iso_8859-3:1988 l3 latin3",
    "iso-8859-4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
    "iso_8859-4:1988 l4 latin4",
    "iso-8859-5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
    "iso_8859-5 iso_8859-5:1988",
    "iso-8859-6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
    "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso-8859-7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
    "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    # Logical (-i) and visual Hebrew differ in display order only, never in the bytes' meaning.
    "iso-8859-8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
    "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso-8859-10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso-8859-13": "iso-8859-13 iso8859-13 iso885913",
    "iso-8859-14": "iso-8859-14 iso8859-14 iso885914",
    "iso-8859-15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso-8859-16": "iso-8859-16",
    "koi8-r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8-u": "koi8-ru koi8-u",
    "macintosh": "csmacintosh mac macintosh x-mac-roman",
    "mac-cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "windows-1250": "cp1250 windows-1250 x-cp1250",
    "windows-1251": "cp1251 windows-1251 x-cp1251",
    # x-user-defined is what a <meta> naming it means (HTML Standard, prescan step).
    "windows-1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
    "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252 "
    "x-user-defined",
    "windows-1253": "cp1253 windows-1253 x-cp1253",
    "windows-1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
    "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "windows-1255": "cp1255 windows-1255 x-cp1255",
    "windows-1256": "cp1256 windows-1256 x-cp1256",
    "windows-1257": "cp1257 windows-1257 x-cp1257",
    "windows-1258": "cp1258 windows-1258 x-cp1258",
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk "
    "gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc-jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso-2022-jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
    "ksc5601 ksc_5601 windows-949",
    "utf-16be": "unicodefffe utf-16be",
    "utf-16le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
}
_LABELS = {label: name for name, labels in _ENCODINGS.items() for label in labels.split()}


def _python_names() -> dict[str, str]:
    """Map Python's canonical codec names onto our names, so "latin-1" or "utf_8" are understood.

    Only codecs some WHATWG label reaches get in: a page cannot pick rot13, base64 or UTF-7
    (a classic XSS vector) just because Python's registry happens to know it. Building the map
    also proves at import time that every name in the table is a codec Python has.
    """
    names = {codecs.lookup(name).name: name for name in _ENCODINGS}
    for label, name in _LABELS.items():
        try:
            names.setdefault(codecs.lookup(label).name, name)
        except LookupError:
            continue
    return names


_PYTHON_NAMES = _python_names()


def _encoding(label: str) -> str | None:
    """The codec name for a charset label, or None when neither WHATWG nor Python knows it."""
    label = label.strip().lower()
    name = _LABELS.get(label)
    if name is not None:
        return name
    try:
        return _PYTHON_NAMES.get(codecs.lookup(label).name)
    except LookupError:
        return None


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16le"), (b"\xfe\xff", "utf-16be"))
_HEADER_CHARSET = re.compile(r"""(?:^|;)\s*charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
# One pattern covers <meta charset=x> and <meta http-equiv=content-type content="...; charset=x">.
_META_CHARSET = re.compile(rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([\w.:+-]+)""", re.IGNORECASE)
_PRESCAN_BYTES = 2048


def charset_of(body: bytes, content_type: str | None) -> str:
    """The name of the codec to decode an HTML body with; "utf-8" when nothing says otherwise.

    A byte-order mark wins even over the header, as in the HTML Standard's sniffing algorithm:
    bytes that open with one were written in that encoding whatever the server claims. Unknown
    labels are skipped, so a bogus header still lets the page's own <meta> speak, wherever it
    stands (`extract_links` finds a late one in the parsed tree instead of searching the bytes).

    >>> charset_of(b"<meta charset=latin1>", "text/html")
    'windows-1252'
    """
    name, certain = sniff(body, content_type)
    if certain:
        return name
    for meta in _META_CHARSET.finditer(body):
        declared = _meta_encoding(meta[1].decode("ascii"))
        if declared is not None:
            return declared
    return "utf-8"


def sniff(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """(codec, certain) before parsing: BOM or header are certain, a prescanned <meta> is not."""
    for bom, bom_name in _BOMS:
        if body.startswith(bom):
            return bom_name, True
    header = _HEADER_CHARSET.search(content_type) if content_type else None
    name = _encoding(header[1]) if header else None
    if name is not None:
        return name, True
    meta = _META_CHARSET.search(body, 0, _PRESCAN_BYTES)
    name = _meta_encoding(meta[1].decode("ascii")) if meta else None
    return name or "utf-8", False


def _meta_encoding(label: str) -> str | None:
    """The codec a <meta> label names; a <meta> legible as ASCII proves the bytes are not UTF-16."""
    name = _encoding(label)
    return "utf-8" if name is not None and name.startswith("utf-16") else name


def declared_charset(metas: list[dict[str, str | None]]) -> str | None:
    """The codec the first <meta> that names a known one declares (charset or http-equiv)."""
    for attrs in metas:
        label = attrs.get("charset")
        if label is None and (attrs.get("http-equiv") or "").strip().lower() == "content-type":
            found = _HEADER_CHARSET.search(attrs.get("content") or "")
            label = found[1] if found else None
        name = _meta_encoding(label) if label else None
        if name is not None:
            return name
    return None
