"""The CLI reference page of the documentation site, generated from the Typer app so that it cannot drift.

``python -m edgecnn.cli.docs`` rewrites docs/cli.md; a test fails when the committed page differs from what
the code would generate.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import click

PAGE = Path("docs") / "cli.md"
HEADER = """# CLI reference

<!-- Generated from the Typer app by `python -m edgecnn.cli.docs`: edit the commands' help, not this page. -->

Every command, argument and option of `edgecnn`, generated from the command line's own definitions (a test
fails when this page and the code disagree). `edgecnn COMMAND --help` prints the same on a terminal. Exit
codes: [Troubleshooting](troubleshooting.md#exit-codes).
"""


def summary(help_text: str | None) -> str:
    """The first paragraph of a command's help, joined into one line."""
    paragraph = (help_text or "").strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def usage(name: str, command: click.Command) -> str:
    """``edgecnn NAME [OPTIONS] ARG...``: optional arguments in brackets, repeatable ones with ``...``."""
    pieces = [f"edgecnn {name}", "[OPTIONS]"]
    for p in command.params:
        if p.param_type_name == "argument":
            piece = (p.metavar or p.name).upper() + ("..." if p.nargs == -1 else "")
            pieces.append(piece if p.required else f"[{piece}]")
    return " ".join(pieces)


def cli_reference(group: click.Group | None = None) -> str:
    """Markdown: one section per command (summary, usage), one table row per argument and option.

    Args:
        group: The click group to document [default: the ``edgecnn`` Typer app's].
    """
    if group is None:
        import typer

        from edgecnn.cli import app

        group = cast("click.Group", typer.main.get_command(app))
    parts = []
    for name, command in group.commands.items():
        parts.append(
            f"## `edgecnn {name}`\n\n{summary(command.help)}\n\n"
            f"```text\n{usage(name, command)}\n```\n\n| option | default | meaning |\n|---|---|---|"
        )
        params: list[Any] = list(command.params)  # options and arguments: attributes differ
        for p in params:
            help_text = (getattr(p, "help", "") or "").replace("|", "\\|")
            if p.param_type_name == "argument":
                many = "..." if p.nargs == -1 else ""
                parts.append(f"| `{p.name.upper()}{many}` (argument) | | {help_text} |")
                continue
            if p.is_flag and p.secondary_opts:
                names = f"`{p.opts[0]}/{p.secondary_opts[0]}`"
            else:
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            default = p.default.value if hasattr(p.default, "value") else p.default
            shown = "" if default is None or isinstance(default, bool) else f"`{default}`"
            if isinstance(p.show_default, str):  # a default the library applies (the option's own is None)
                shown = f"`{p.show_default}`"
            parts.append(f"| {names} | {shown} | {help_text} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def cli_page(group: click.Group | None = None) -> str:
    """The whole of docs/cli.md."""
    return HEADER + "\n" + cli_reference(group)


def main() -> None:
    page = Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE
    page.write_text(cli_page(), encoding="utf-8")
    print(f"wrote the CLI reference to {page}")


if __name__ == "__main__":
    main()
