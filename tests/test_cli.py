"""The `vlprm` command dispatches to every stage's entry point."""

import importlib
import subprocess
import sys

from vlprm.cli import COMMANDS, main


def test_every_subcommand_has_a_main():
    for name, (module, _) in COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main")), name


def test_help_lists_commands_and_unknown_command_fails(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(["no-such-stage"]) == 2


def test_subcommand_help_runs_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-m", "vlprm.cli", "puzzles", "list"], capture_output=True,
                         text=True, check=True).stdout
    assert "color_grid" in out and "maze" in out
