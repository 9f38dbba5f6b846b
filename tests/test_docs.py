"""The README and the pages under docs/: every archgrad command they show parses with the CLI's
own parser, every link points to a file that exists, every Python block parses and names only
what archgrad exports, and the cheap commands (lookup, info, list) say what the page says."""
import ast
import re
import shlex
from pathlib import Path

import pytest

from archgrad.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _bash_lines(page: Path) -> list[tuple[str, str]]:
    """(page name, one shell line) for every line of the page's bash blocks, continuation lines
    joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append((page.name, line))
    return out


def _archgrad_argvs(line: str) -> list[list[str]]:
    """The archgrad invocations of one shell line (also after `&&`, under torchrun or
    `python -m archgrad`), without their output redirections."""
    words = shlex.split(line, comments=True)
    parts, cur = [], []
    for w in words:
        if w in ("&&", "||", ";", "|"):
            parts.append(cur)
            cur = []
        else:
            cur.append(w)
    parts.append(cur)
    argvs = []
    for p in parts:
        p = [w for i, w in enumerate(p) if w not in (">", ">>") and (i == 0 or p[i - 1] not in
                                                                        (">", ">>"))]
        if not p:
            continue
        if p[0].endswith("archgrad"):
            argvs.append(p[1:])
        elif "-m" in p and p[p.index("-m") + 1:p.index("-m") + 2] == ["archgrad"]:
            argvs.append(p[p.index("-m") + 2:])
    return argvs


CASES = [(page, line, argv) for pg in PAGES for page, line in _bash_lines(pg)
         for argv in _archgrad_argvs(line)]


def test_the_pages_show_commands():
    assert len(CASES) > 40
    assert {p for p, _, _ in CASES} >= {"README.md", "cli.md", "reproducing.md", "ptb.md",
                                        "distributed.md"}


@pytest.mark.parametrize("page,line,argv", CASES, ids=[f"{p}:{' '.join(a[:2])}"
                                                       for p, _, a in CASES])
def test_every_command_shown_parses(page, line, argv, capsys):
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{page}: `{line.strip()}` does not parse (exit {e.code}): "
                    f"{err[-1] if err else ''}")


def _links(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if not re.match(r"[a-z]+://", target):
            yield target.split("#")[0]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_points_to_a_file(page):
    missing = [t for t in _links(page) if t and not (page.parent / t).exists()]
    assert not missing, f"{page.name}: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t).resolve() for t in _links(ROOT / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, sorted(p.name for p in pages - linked)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_parse_and_name_only_what_archgrad_exports(page):
    import archgrad
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
        tree = ast.parse(block)
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Name) and n.value.id == "archgrad"}
        missing = sorted(n for n in names if not hasattr(archgrad, n))
        assert not missing, f"{page.name}: {missing}"


@pytest.mark.parametrize("argv,expect", [
    (["info", "DARTS_V2", "--space", "darts"], ["3,349,342"]),
    (["info", "DARTS_V2", "--space", "darts-rnn"], ["22,960,000"]),
    (["list", "strategies"], ["darts-2nd", "drnas", "oles", "sdarts-adv"]),
])
def test_the_figures_the_pages_quote_are_what_the_commands_print(argv, expect, capsys):
    from archgrad.cli import main
    assert main(argv) == 0
    out = capsys.readouterr().out
    for e in expect:
        assert e in out, (argv, e)
    shown = " ".join(" ".join(a) for _, _, a in CASES)
    assert " ".join(argv) in shown  # the pages show this very command


def test_the_readme_counts_the_registered_strategies():
    import archgrad
    n = re.search(r"\*\*Strategies\*\* \((\d+) registered", (ROOT / "README.md").read_text())
    assert n and int(n.group(1)) == len(archgrad.list_strategies())
