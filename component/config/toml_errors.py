"""TOML syntax errors in plain words: tomlkit's parse error -> the line and one sentence saying what is wrong
there (an unclosed string, a bare word for a value, a key defined twice...). Pure: text in, text out."""

from __future__ import annotations

import ast
import re

import tomlkit
from tomlkit import exceptions as toml
from tomlkit.exceptions import TOMLKitError

# tomlkit's ParseError subclasses whose meaning does not depend on where they occur.
_PLAIN: dict[type[TOMLKitError], str] = {
    toml.EmptyKeyError: "a key is missing before '='",
    toml.EmptyTableNameError: "a table header needs a name, as in [bot]",
    toml.InvalidNumberError: "not a valid number (as 10, 2.5 or 1_000; a string needs quotes)",
    toml.InvalidNumberOrDateError: "not a valid number or date (a string needs quotes)",
    toml.InvalidDateError: "not a valid date (as 2024-05-27; a string needs quotes)",
    toml.InvalidTimeError: "not a valid time (as 07:32:00; a string needs quotes)",
    toml.InvalidDateTimeError: "not a valid date and time (as 2024-05-27T07:32:00Z; a string needs quotes)",
    toml.InvalidUnicodeValueError: r"a \u escape needs 4 hex digits (\U 8) naming a Unicode character",
    toml.MixedArrayTypesError: "an array mixes types of values",
}
# What may be missing when the file ends too early, tried in this order.
_CLOSERS = (
    ('"""', 'a multi-line string is not closed (a missing """?)'),
    ("'''", "a multi-line string is not closed (a missing '''?)"),
    ('"', 'a string is not closed (a missing "?)'),
    ("'", "a string is not closed (a missing '?)"),
    ("]]", "a table header is not closed (a missing ]]?)"),
    ("]", "an array is not closed (a missing ]?)"),
    ("}", "an inline table is not closed (a missing }?)"),
)


def _parses(text: str) -> bool:
    try:
        tomlkit.parse(text).unwrap()
    except TOMLKitError:
        return False
    return True


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _unclosed_at_end(text: str) -> tuple[int, str] | None:
    """When adding a closing quote or bracket at the end makes the file parse: where its opening is, and what."""
    for closer, sentence in _CLOSERS:
        if _parses(text + closer):
            opener = {"]": "[", "]]": "[[", "}": "{"}.get(closer, closer)
            if closer == "]" and text.rstrip().rsplit("\n", 1)[-1].lstrip().startswith("["):
                sentence = "a table header is not closed (a missing ]?)"
            return _line_of(text, text.rfind(opener)), sentence
    return None


def _unclosed_before(lines: list[str], number: int) -> tuple[int, str] | None:
    """An array or inline table left open on an earlier line: closing it there makes the error go away."""
    previous = next((n for n in range(number - 1, 0, -1) if lines[n - 1].strip()), None)
    if previous is None:
        return None
    for closer, what in (("]", "an array"), ("}", "an inline table")):
        fixed = [*lines[: previous - 1], lines[previous - 1] + closer, *lines[previous:]]
        if _parses("\n".join(fixed)):
            return previous, f"{what} is not closed (a missing {closer}?)"
    return None


def _quote_on(line: str) -> str:
    match = re.search(r"""=\s*\[?\s*(["'])""", line) or re.search(r"""(["'])""", line)
    return match.group(1) if match else '"'


def _unexpected(text: str, lines: list[str], number: int, col: int, char: str) -> tuple[int, str]:
    at_end = char in ("\n", "\r", "\x00")
    if char == "\x00":  # the end of the file, which tomlkit places at column 0: at the end of the last line
        if found := _unclosed_at_end(text):
            return found
        number = max((n for n, line in enumerate(lines, 1) if line.strip()), default=1)
        col = len(lines[number - 1])
    line = lines[number - 1] if number <= len(lines) else ""
    before = line[:col]
    if not before.strip() and (found := _unclosed_before(lines, number)):
        return found
    if line.lstrip().startswith("[") and "=" not in before:
        if at_end:
            closer = "]]" if line.lstrip().startswith("[[") else "]"
            return number, f"a table header is not closed (a missing {closer}?)"
        return number, f"a table header holds {char!r}: write [name] or [name.sub], quoting a name with such characters"
    if "=" not in before:
        key = before.strip()
        if at_end:
            return number, f"{key!r} is not followed by '=' and a value (a missing '='?)"
        if char.isalnum():  # a letter outside A-Z: a bare key may not hold it
            word = line.split("=")[0].strip()
            return number, f'a bare key may hold only A-Z, a-z, 0-9, _ and -: quote it, as "{word}"'
        return number, f"expected '=' after the key {key!r}, found {char!r}"
    if before.rstrip().endswith("="):
        if at_end:
            return number, "a value is missing after '='"
        word = re.split(r"[\s,\]}#]", line[col:], maxsplit=1)[0] or char
        if not char.isalnum():
            return number, f"{char!r} cannot start a value"
        if word[-1] in "\"'":
            return number, f"a string needs a quote at each end, as {word[-1]}{word[:-1]}{word[-1]}"
        if word.lower() in ("true", "false"):
            return number, f"{word} is not a value: write true and false in lower case"
        return number, f'{word} is not a value (a string needs quotes: "{word}")'
    return number, f"unexpected {char!r} after a value (one key = value per line; a comment starts with #)"


def _already_defined(lines: list[str], key: str) -> int | None:
    """The line that defines `key` a second time, for tomlkit's duplicate-key error that has none."""
    pattern = re.compile(rf"""(^|[\s{{,.])["']?{re.escape(key)}["']?\s*=""")
    found = [n for n, line in enumerate(lines, 1) for _ in pattern.finditer(line)]
    return found[1] if len(found) > 1 else (found[0] if found else None)


def syntax_error(text: str, exc: TOMLKitError) -> tuple[int | None, str]:
    """tomlkit's error -> (line number, a plain sentence saying what is wrong)."""
    message = str(exc)
    lines = text.split("\n")
    line: int | None = getattr(exc, "line", None)
    col: int = getattr(exc, "col", 0)
    if match := re.match(r'Key "(.*)" already exists', message):
        key = match.group(1)
        return line or _already_defined(lines, key), f"{key!r} is already defined (a key or table may appear only once)"
    if line is None:
        return None, message
    if type(exc) in _PLAIN:
        return line, _PLAIN[type(exc)]
    if isinstance(exc, toml.InvalidControlChar):
        shown = re.search(r"\\u([0-9a-f]{4})", message)
        code = int(shown.group(1), 16) if shown else 0
        if code in (0x0A, 0x0D):
            quote = _quote_on(lines[line - 1])
            return line, f"a string is not closed (a missing {quote}?)"
        if "comments" in message:
            return line, f"a control character (U+{code:04X}) is not allowed in a comment"
        return line, f"a control character (U+{code:04X}) is not allowed in a string: write \\u{code:04x}"
    if isinstance(exc, toml.UnexpectedEofError):
        return _unclosed_at_end(text) or (line, "the file ends in the middle of a value")
    if isinstance(exc, toml.InvalidCharInStringError):
        shown = re.search(r"character ('.*'|\".*\") in", message)
        escape = ast.literal_eval(shown.group(1)) if shown else "?"
        if escape in ("\n", "\r"):  # a backslash at the end of a line
            return line, f"a string is not closed (a missing {_quote_on(lines[line - 1])}?)"
        return line, f"\\{escape} is not an escape: write \\\\ for a backslash, or use '...' for a literal string"
    if match := re.match(r'Invalid key "(.*)"', message):
        return line, f"{match.group(1)!r} is not a key (a missing '='? a key with spaces needs quotes)"
    if match := re.match(r"Unexpected character: (.*) at line", message):
        char = ast.literal_eval(match.group(1))  # tomlkit shows it as repr() does
        return _unexpected(text, lines, line, col, char)
    if isinstance(exc, toml.InternalParserError):
        return line, f"the TOML parser failed: {message}"
    return line, re.sub(r" at line \d+ col \d+$", "", message)
