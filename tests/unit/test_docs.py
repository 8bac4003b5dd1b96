"""The documentation against the repository: the README's `docker compose` command sets every variable that
docker-compose.yml requires; every relative link in README.md and docs/*.md leads to a file (and heading) that
exists; every flag the docs give the component's command is one that command accepts."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]

# Compose interpolation: ${VAR}, ${VAR?msg} and ${VAR:?msg} have no default, so the variable must be set;
# ${VAR-x}, ${VAR:-x}, ${VAR+x} and ${VAR:+x} do not need it. A bare $VAR has no default either; $$ is a dollar.
_BRACED_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?[^}]*\}")
_BARE_VAR = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")
# A `docker compose` command that starts containers, with the VAR=value assignments in front of it.
_COMPOSE_COMMAND = re.compile(r"((?:\b[A-Za-z_][A-Za-z0-9_]*=[^\s`]+[ \t]+)*)docker compose (?:up|run|create|start)\b")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=[^\s`]+")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
# The component's command: the console script from a venv's bin/, or `python -m component`, and its arguments.
_INVOCATION = re.compile(r"(?:bin/xmpp-http-component|-m component)((?:[ \t]+(?!#)[^\s`]+)*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _strip_yaml_comments(text: str) -> str:
    """The YAML without its comments: a `#` at the start of a line or after a blank, outside quotes."""
    out = []
    for line in text.splitlines():
        quote = ""
        for i, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#" and (i == 0 or line[i - 1] in " \t"):
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def required_compose_vars(text: str) -> set[str]:
    """The variables a compose file needs set: referenced without a default."""
    text = _strip_yaml_comments(text)
    braced = {m.group(1) for m in _BRACED_VAR.finditer(text) if m.group(2) in (None, "?", ":?")}
    return braced | set(_BARE_VAR.findall(text))


def _unfenced(text: str) -> str:
    """Markdown without its fenced code blocks (where `# x` is no heading and `[a](b)` no link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return "\n".join(lines)


def _prose(text: str) -> str:
    """Markdown without code: fenced blocks and code spans."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_unfenced(markdown.read_text(encoding="utf-8"))):
        slug = _anchor(heading)
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def broken_links(markdown: Path, root: Path = REPO) -> list[str]:
    """Each relative link of a Markdown file whose file (within root), or heading in a Markdown file, is missing."""
    prose = _prose(markdown.read_text(encoding="utf-8"))
    broken = []
    for target in [*_LINK.findall(prose), *_REFERENCE_LINK.findall(prose)]:
        if _SCHEME.match(target):
            continue  # http:, https:, mailto: ...
        path, _, fragment = target.partition("#")
        dest = (markdown.parent / unquote(path)).resolve() if path else markdown
        if not dest.is_relative_to(root) or not dest.exists():
            broken.append(f"{target}: no such file in the repository")
        elif fragment and dest.suffix == ".md" and unquote(fragment).lower() not in anchors(dest):
            broken.append(f"{target}: no such heading in {dest.relative_to(root)}")
    return broken


@functools.cache
def _help(subcommand: str | None) -> tuple[int, str]:
    args = [subcommand, "--help"] if subcommand else ["--help"]
    result = subprocess.run(
        [sys.executable, "-m", "component", *args], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    return result.returncode, result.stdout + result.stderr


def invocations(text: str) -> list[tuple[str | None, list[str]]]:
    """(subcommand or None, its --flags) for each command line of the component in a Markdown text; a line
    continued with a backslash counts as one."""
    out = []
    for match in _INVOCATION.finditer(text.replace("\\\n", " ")):
        words = match.group(1).split()
        sub = words[0] if words and re.fullmatch(r"[a-z][a-z-]*", words[0]) else None
        out.append((sub, _FLAG.findall(match.group(1))))
    return out


# -- the helpers themselves: each can tell a good document from a bad one ---------------------------------------


def test_required_compose_vars_are_those_without_a_default() -> None:
    text = """
    # ${IN_A_COMMENT:?x} $ALSO_A_COMMENT
    a: ${REQ_COLON:?set it}
    b: ${REQ_PLAIN}
    c: ${REQ_QUESTION?set it}
    d: $REQ_BARE
    e: ${OPT_COLON:-x} ${OPT_DASH-x} ${OPT_PLUS:+x} $$NOT_A_VAR
    f: "a # in quotes ${REQ_QUOTED}"   # ${TRAILING_COMMENT}
    """
    assert required_compose_vars(text) == {"REQ_COLON", "REQ_PLAIN", "REQ_QUESTION", "REQ_BARE", "REQ_QUOTED"}


def test_broken_links_are_found(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    (root / "docs").mkdir()
    (root / "README.md").write_text("# Title\n\n## Run it\n")
    (root / "docs" / "other.md").write_text("# Other\n")
    (root / "outside.md").write_text("")
    probe = root / "docs" / "probe.md"
    probe.write_text(
        "# Top\n## 1. Install: the `component`\n"
        "[ok](other.md) [ok](#top) [ok](#1-install-the-component) [ok](../README.md#run-it) [ok](<other.md>)\n"
        "[web](https://example.com/x.md) [mail](mailto:a@example.com) ![img](other.md)\n"
        "[gone](no-such-file.md) [gone](#no-such-heading) [gone](../README.md#no-such-heading)\n"
        "[gone][ref]\n\n[ref]: ../no-such-dir/\n"
        "```sh\n# not a heading\n[not a link](in-a-code-block.md)\n```\n`[not a link](in-a-code-span.md)`\n"
    )
    assert broken_links(probe, root) == [
        "no-such-file.md: no such file in the repository",
        "#no-such-heading: no such heading in docs/probe.md",
        "../README.md#no-such-heading: no such heading in README.md",
        "../no-such-dir/: no such file in the repository",
    ]
    assert broken_links(root / "docs" / "other.md", root / "docs") == []
    (root / "docs" / "other.md").write_text("[up](../outside.md)\n")  # exists, but outside the root
    assert broken_links(root / "docs" / "other.md", root / "docs") == ["../outside.md: no such file in the repository"]


def test_invocations_are_parsed() -> None:
    text = (
        "```sh\n.venv/bin/xmpp-http-component --config a.toml --check-config  # --not-a-flag\n"
        "/opt/x/bin/xmpp-http-component init b.toml --force\n"
        "sh -c 'exec runuser -u xmpp-http-component -- \\\n    /opt/x/bin/xmpp-http-component --config c.toml'\n"
        ".venv/bin/python -m component --log-level DEBUG\n```\n"
        "`xmpp-http-component[fast]` and `/etc/xmpp-http-component/config.toml` are not commands\n"
    )
    assert invocations(text) == [
        (None, ["--config", "--check-config"]),
        ("init", ["--force"]),
        (None, ["--config"]),
        (None, ["--log-level"]),
    ]


# -- the documents ------------------------------------------------------------------------------------------------


def test_readme_docker_compose_command_sets_every_required_variable() -> None:
    required = required_compose_vars((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "XMPP_COMPONENT_SECRET" in required  # the compose file refuses to start without it
    commands = list(_COMPOSE_COMMAND.finditer(README.read_text(encoding="utf-8")))
    assert commands, "README.md shows no `docker compose up` command"
    for command in commands:
        missing = required - set(_ASSIGNMENT.findall(command.group(1)))
        assert not missing, f"README.md: `{command.group(0)}` does not set {sorted(missing)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_that_exist(doc: Path) -> None:
    assert broken_links(doc) == []


def test_readme_links_to_the_deployment_page() -> None:
    assert "(docs/deployment.md)" in _prose(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("doc", [README, REPO / "docs" / "deployment.md"], ids=lambda p: str(p.relative_to(REPO)))
def test_documented_flags_exist(doc: Path) -> None:
    found = invocations(doc.read_text(encoding="utf-8"))
    assert found, f"{doc.name} shows no command line of the component"
    for sub, flags in found:
        command = " ".join(["xmpp-http-component", *([sub] if sub else []), "--help"])
        returncode, help_text = _help(sub)
        assert returncode == 0, f"{doc.name}: `{command}` failed:\n{help_text}"
        unknown = [flag for flag in flags if flag not in set(_FLAG.findall(help_text))]
        assert not unknown, f"{doc.name}: {unknown} not in `{command}`:\n{help_text}"
