"""The README's commands, the generated CLI reference and the CI script stay in step with the code."""

import contextlib
import io
import re
from dataclasses import fields

from conftest import REPO

from edgecnn.cli.docs import cli_page

README = (REPO / "README.md").read_text(encoding="utf-8")
CLI_PAGE = REPO / "docs" / "cli.md"


def setup_commands():
    block = README.split("## Start here", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def tour_commands():
    block = README.split("## A tour on your own photos", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].split() for line in block.strip().splitlines() if line.strip()]


def make_target(name: str) -> list[str]:
    """The recipe lines of one Makefile target."""
    lines = (REPO / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_readme_starts_with_exactly_two_setup_commands():
    assert setup_commands() == ["make demo", "make test"]


def test_readme_is_read_in_five_minutes():
    assert len(README.splitlines()) < 150


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert setup_commands()[1] in commands


def test_the_readme_test_command_builds_the_site_strictly_and_runs_the_tests():
    recipe = make_target("test")
    assert any("mkdocs build" in line and "--strict" in line for line in recipe), recipe
    assert any("pytest" in line for line in recipe), recipe
    assert any("mkdocs build" in line for line in make_target("docs"))
    assert any("mkdocs serve" in line for line in make_target("docs-serve"))


def test_the_tour_is_five_steps_one_command_each():
    commands = tour_commands()
    assert [c[1] for c in commands] == ["train", "evaluate", "export", "classify", "webcam"]
    assert all(c[0] == "edgecnn" for c in commands)
    assert "--int8" in commands[2]


def test_readme_links_into_every_page_of_the_site():
    linked = set(re.findall(r"\]\(docs/([^)#]+)", README))
    for page in linked:
        assert (REPO / "docs" / page).is_file(), f"README links to docs/{page}, which does not exist"
    nav = set(re.findall(r":\s*([\w.-]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE))
    assert nav - {"index.md"} <= linked, (
        f"pages of the site the README does not link: {nav - linked - {'index.md'}}"
    )


def test_readme_python_example_runs(monkeypatch):
    block = README.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().startswith("circle (")


def test_cli_reference_is_generated_from_the_code():
    committed = CLI_PAGE.read_text(encoding="utf-8")
    assert committed == cli_page(), "run `python -m edgecnn.cli.docs` to refresh docs/cli.md"


def test_the_reference_check_sees_a_changed_option():
    """A help text changed in the code makes the generated page differ from the committed one."""
    import typer

    from edgecnn.cli import app

    group = typer.main.get_command(app)
    assert cli_page(group) == CLI_PAGE.read_text(encoding="utf-8")
    option = next(p for p in group.commands["classify"].params if p.name == "top_k")
    option.help = f"{option.help} (changed)"
    assert cli_page(group) != CLI_PAGE.read_text(encoding="utf-8")


def test_every_option_of_every_command_is_documented():
    import typer

    from edgecnn.cli import app

    reference = CLI_PAGE.read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `edgecnn {name}`" in reference, f"`edgecnn {name}` has no section in docs/cli.md"
        section = reference.split(f"## `edgecnn {name}`", 1)[1].split("\n## ", 1)[0]
        for param in command.params:
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-"):
                    assert opt in section, f"{opt} of `edgecnn {name}` is missing from docs/cli.md"


def test_cli_train_defaults_match_the_library():
    import typer

    from edgecnn.cli import app
    from edgecnn.training.config import TrainConfig

    command = typer.main.get_command(app).commands["train"]
    defaults = {p.name: p.default for p in command.params}
    lib = {f.name: f.default for f in fields(TrainConfig)}
    for name in (
        "epochs",
        "batch_size",
        "seed",
        "patience",
        "base_filters",
        "weights",
        "fine_tune_epochs",
        "img_size",
        "learning_rate",
    ):
        assert defaults[name] == lib[name], name


def test_no_placeholders_left():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert not re.search(r"RESULTS_[A-Z]+", page.read_text(encoding="utf-8")), page.name
