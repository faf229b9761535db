"""The README's commands, CLI reference and CI script stay in step with the code."""

import re
from dataclasses import fields

from conftest import REPO

from edgecnn.cli.docs import BEGIN, END, cli_reference

README = (REPO / "README.md").read_text(encoding="utf-8")


def setup_commands():
    block = README.split("## Start here", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_readme_starts_with_exactly_two_setup_commands():
    assert setup_commands() == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert setup_commands()[1] in commands


def test_cli_reference_is_generated_from_the_code():
    block = README.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert block == cli_reference().strip(), "run `python -m edgecnn.cli.docs` to refresh README.md"


def test_every_option_of_every_command_is_documented():
    import typer

    from edgecnn.cli import app

    reference = README.split(BEGIN, 1)[1]
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        section = reference.split(f"#### `edgecnn {name}`", 1)[1].split("#### ", 1)[0]
        for param in command.params:
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-"):
                    assert opt in section, f"{opt} of `edgecnn {name}` is missing from the README"


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
    assert not re.search(r"RESULTS_[A-Z]+", README)
