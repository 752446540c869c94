"""The web page's JavaScript stays readable: no function body over MAX_BODY_LINES lines.

A small honest scan, not a parser: strings, template literals, comments and regex literals are blanked (newlines
kept), then every `{` that opens a function body is matched to its `}`: after `=>`, or after the `)` of a
parameter list that follows `function`, a method name or an accessor (not `if`, `for`, `while`, `switch`, `catch`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "src" / "admin" / "static"
MAX_BODY_LINES = 80
NOT_FUNCTIONS = {"if", "for", "while", "switch", "catch", "with"}
# A `/` after one of these (or at the start) begins a regex literal; after anything else it divides.
REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^") | {""}
REGEX_AFTER_WORDS = {"return", "typeof", "case", "of", "in", "else", "void", "delete", "throw", "yield", "await"}


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def _quoted_end(src: str, start: int, quote: str) -> int:
    """Index just past the string or regex body that opened at `start`."""
    i, in_class = start + 1, False
    while src[i] != quote or in_class:
        if src[i] == "\\":
            i += 1
        elif quote == "/" and src[i] in "[]":
            in_class = src[i] == "["
        i += 1
    return i + 1


def _previous_token(out: list[str]) -> str:
    code = "".join(out[-40:]).rstrip()
    word = re.search(r"[A-Za-z_$][\w$]*$", code)
    return word.group(0) if word else code[-1:]


def strip_literals(src: str) -> str:
    """`src` with the insides of strings, templates, comments and regexes blanked; braces in `${}` kept."""
    out: list[str] = []
    templates: list[int] = []  # brace depth at which each open `${` closes back into its template literal
    depth, i = 0, 0
    while i < len(src):
        ch, pair = src[i], src[i : i + 2]
        end = i + 1
        if pair == "//":
            end = src.find("\n", i) if "\n" in src[i:] else len(src)
            out.append(_blank(src[i:end]))
        elif pair == "/*":
            end = src.index("*/", i) + 2
            out.append(_blank(src[i:end]))
        elif ch in "'\"" or (ch == "/" and (_previous_token(out) in REGEX_AFTER | REGEX_AFTER_WORDS)):
            end = _quoted_end(src, i, ch)
            out.append(ch + _blank(src[i + 1 : end - 1]) + ch)
        elif ch == "`" or (ch == "}" and templates and templates[-1] == depth - 1):
            if ch == "}":
                templates.pop()
                depth -= 1
            end = i + 1
            while src[end] != "`" and src[end : end + 2] != "${":
                end += 2 if src[end] == "\\" else 1
            if src[end] == "`":
                out.append(ch + _blank(src[i + 1 : end]) + "`")
                end += 1
            else:
                templates.append(depth)
                out.append(ch + _blank(src[i + 1 : end]) + "${")
                end += 2
                depth += 1
        else:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            out.append(ch)
        i = end
    return "".join(out)


def _opens_function(code: str, brace: int) -> bool:
    before = code[:brace].rstrip()
    if before.endswith("=>"):
        return True
    if not before.endswith(")"):
        return False
    level, j = 0, len(before) - 1
    while True:
        level += {")": 1, "(": -1}.get(before[j], 0)
        if level == 0:
            break
        j -= 1
    word = re.search(r"([A-Za-z_$][\w$]*)\s*$", before[:j])
    return word is not None and word.group(1) not in NOT_FUNCTIONS


def function_sizes(src: str) -> list[tuple[str, int]]:
    """(`name` at line N, lines strictly between its `{` and `}`) for every function in `src`."""
    code = strip_literals(src)
    sizes, stack = [], []
    for match in re.finditer(r"[{}]", code):
        if match.group(0) == "{":
            stack.append(match.start())
            continue
        start = stack.pop()
        if _opens_function(code, start):
            head = src[src.rfind("\n", 0, start) + 1 : start].strip()
            first, last = code.count("\n", 0, start), code.count("\n", 0, match.start())
            sizes.append((f"{head[:60]} (line {first + 1})", last - first - 1))
    return sizes


def test_the_scan_sees_functions_of_every_shape() -> None:
    src = (
        "const re = /[{]/g; const s = '{'; // {\n"
        "export async function outer(a, { b } = {}) {\n  const t = `${a ? `{${b}` : '}'}`;\n"
        "  items.map((x) => {\n    return x / 2;\n  });\n  if (a) {\n  }\n}\n"
        "const api = {\n  get token() {\n    return 1;\n  },\n};\n"
    )
    sizes = {name.split(" (line")[0]: lines for name, lines in function_sizes(src)}
    assert sizes == {"export async function outer(a, { b } = {})": 6, "items.map((x) =>": 1, "get token()": 1}


@pytest.mark.parametrize("path", sorted(STATIC.rglob("*.js")), ids=lambda p: str(p.relative_to(STATIC)))
def test_no_function_body_is_longer_than_the_limit(path: Path) -> None:
    sizes = function_sizes(path.read_text(encoding="utf-8"))
    assert sizes, "the scan found no function at all"
    too_long = [f"{name}: {lines} lines" for name, lines in sizes if lines > MAX_BODY_LINES]
    assert not too_long, f"{path.name}: split these functions: {too_long}"
