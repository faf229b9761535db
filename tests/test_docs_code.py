"""The documentation site's code blocks run as written, from the repository root.

- ``python`` blocks run, and a comment on a ``print(...)`` line is that line's output (``...`` stands for any
  text, as in doctest), so a figure quoted on a page cannot drift from what the code prints. A block that
  cannot run here starts with ``# not run: REASON``. A block that talks to ``localhost:8000`` runs against
  an ``edgecnn serve`` the test starts on a free port.
- ``bash`` blocks: every ``edgecnn`` command is parsed against the command line (the command and each option
  exist, a choice is one of its values); a block after ``<!-- test: run -->`` runs as written.
- Output is shown in ``text`` blocks, which are not run.
"""

from __future__ import annotations

import contextlib
import doctest
import enum
import re
import shlex
import sys
import threading
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The site's pages (mkdocs.yml: docs_dir) and the README, which links into them.
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"(?P<marker><!-- test: run -->\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```", re.S)
PRINTED = re.compile(r"^\s*print\(.*\)\s+# (?P<expected>.+)$")
NOT_RUN = re.compile(r"# not run: \S")
SERVED = "localhost:8000"


@dataclass(frozen=True)
class Block:
    page: str
    index: int  # among the page's blocks of this language, from 1
    lang: str
    code: str
    run: bool  # after a `<!-- test: run -->` comment

    def __str__(self) -> str:
        return f"{self.page}-{self.lang}{self.index}"


def blocks(lang: str, pages: list[Path] = PAGES) -> list[Block]:
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        matches = [m for m in FENCE.finditer(text) if m["lang"] == lang]
        for i, m in enumerate(matches, 1):
            found.append(Block(page.name, i, lang, m["code"], bool(m["marker"])))
    return found


#: The README's Python example quotes an int8 figure exactly: tests/test_readme_figures.py checks it.
PYTHON = [b for b in blocks("python") if b.page != "README.md"]
BASH = blocks("bash")


def expected_prints(code: str) -> dict[int, str]:
    """Line number -> the output its comment states, for each commented ``print`` line of ``code``."""
    return {
        number: match["expected"]
        for number, line in enumerate(code.splitlines(), 1)
        if (match := PRINTED.match(line))
    }


def matches(expected: str, printed: str) -> bool:
    return doctest.OutputChecker().check_output(expected + "\n", printed + "\n", doctest.ELLIPSIS)


def run_python(block: Block, code: str) -> dict[int, list[str]]:
    """Run one block; what each of its lines printed."""
    filename = f"{block.page} block {block.index}"
    printed: dict[int, list[str]] = {}

    def recording_print(*args, sep=" ", end="\n", file=None, flush=False):
        if file is not None and file is not sys.stdout:
            print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        caller = sys._getframe(1)
        if caller.f_code.co_filename == filename:
            printed.setdefault(caller.f_lineno, []).append(sep.join(map(str, args)))

    exec(
        compile(code, filename, "exec"), {"__name__": f"docs_example_{block.index}", "print": recording_print}
    )
    return printed


@contextlib.contextmanager
def served_shapes_model() -> Iterator[str]:
    """``edgecnn serve models/shapes-cnn.onnx`` on a free loopback port; yields ``127.0.0.1:PORT``."""
    from edgecnn.serving.config import ServeConfig, parse_model
    from edgecnn.serving.server import Server

    model = parse_model(f"shapes-cnn={ROOT / 'models' / 'shapes-cnn.onnx'}")
    server = Server(ServeConfig(models=(model,), port=0, provider="cpu", threads=1, workers=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.registry.all_ready.wait(30), "the served model did not load"
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop()
        thread.join(30)


def test_the_site_has_examples():
    assert len(PYTHON) >= 8
    assert sum(len(expected_prints(b.code)) for b in PYTHON) >= 6  # the pages state outputs to check
    assert any(b.run for b in BASH)


def test_the_output_check_can_fail():
    assert matches("circle (0.961)", "circle (0.961)")
    assert matches("[('square', 0.99...), ...]", "[('square', 0.9931), ('circle', 0.004)]")
    assert not matches("circle (0.998)", "circle (0.961)")
    assert expected_prints("x = 1\nprint(x)  # 1\nprint(x)\n") == {2: "1"}


def test_blocks_are_found_with_their_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nprint(1)  # 1\n```\n\n<!-- test: run -->\n```bash\nedgecnn info m\n```\n")
    assert [(b.lang, b.run) for b in blocks("python", [page]) + blocks("bash", [page])] == [
        ("python", False),
        ("bash", True),
    ]


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_python_block_runs_and_prints_what_the_page_says(block, monkeypatch):
    if NOT_RUN.match(block.code):
        pytest.skip(block.code.splitlines()[0])
    monkeypatch.chdir(ROOT)
    with contextlib.ExitStack() as stack:
        code = block.code
        if SERVED in code:
            pytest.importorskip("tritonclient.http")
            code = code.replace(SERVED, stack.enter_context(served_shapes_model()))
        printed = run_python(block, code)
    for number, expected in expected_prints(block.code).items():
        assert number in printed, f"{block}, line {number} printed nothing; the page says {expected!r}"
        for text in printed[number]:
            assert matches(expected, text), (
                f"{block}, line {number}: printed {text!r}, page says {expected!r}"
            )


def edgecnn_commands(code: str) -> list[list[str]]:
    """The ``edgecnn`` command lines of a shell block, as argument lists (comments and ``\\`` joins handled)."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        if line.startswith(("edgecnn ", ".venv/bin/edgecnn ")):
            commands.append(shlex.split(line, comments=True)[1:])
    return commands


def choices(param) -> list[str]:
    """The values a choice option takes (its annotation is a ``str`` Enum), or [] for any other option."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for kind in (annotation, *typing.get_args(annotation)):
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return [str(member.value) for member in kind]
    return []


def parse_problems(args: list[str]) -> list[str]:
    """What is wrong with ``edgecnn ARGS`` as the command line would parse it (nothing is run)."""
    import typer

    from edgecnn.cli import app

    group = typer.main.get_command(app)
    command = group.commands.get(args[0])  # type: ignore[attr-defined]
    if command is None:
        return [f"no command {args[0]!r}"]
    options = {o: p for p in command.params for o in [*p.opts, *p.secondary_opts] if o.startswith("-")}
    problems = []
    words = iter(args[1:])
    for word in words:
        if not word.startswith("-") or word == "-":
            continue
        name, _, inline = word.partition("=")
        param = options.get(name)
        if param is None:
            problems.append(f"`edgecnn {args[0]}` has no option {name}")
            continue
        if param.is_flag or param.count:
            continue
        value = inline or next(words, "")
        allowed = choices(param)
        if allowed and value != "..." and value not in allowed:
            problems.append(f"{name} {value!r} is not one of {allowed}")
    return problems


def test_the_parse_check_can_fail():
    assert parse_problems(["classify", "photos", "-r", "--top-k", "3", "--provider", "cpu"]) == []
    assert parse_problems(["classify", "photos", "--labels", "x.txt"]) == [
        "`edgecnn classify` has no option --labels"
    ]
    assert parse_problems(["classify", "photos", "--provider", "tpu"])[0].startswith("--provider 'tpu'")
    assert parse_problems(["clasify", "photos"]) == ["no command 'clasify'"]


@pytest.mark.parametrize("block", [b for b in BASH if edgecnn_commands(b.code)], ids=str)
def test_every_edgecnn_command_on_the_site_parses(block):
    problems = [p for args in edgecnn_commands(block.code) for p in parse_problems(args)]
    assert not problems, f"{block}: {problems}"


@pytest.mark.parametrize("block", [b for b in BASH if b.run], ids=str)
def test_blocks_marked_to_run_run(block, monkeypatch):
    from typer.testing import CliRunner

    from edgecnn.cli import app

    monkeypatch.chdir(ROOT)
    commands = edgecnn_commands(block.code)
    assert commands, f"{block} is marked to run but has no edgecnn command"
    for args in commands:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (
            f"{block}: `edgecnn {shlex.join(args)}` exited {result.exit_code}\n{result.output}"
        )
