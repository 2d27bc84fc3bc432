"""Every option of every command says what it does, and each --strength says why its default is what it is."""

from __future__ import annotations

import click

from cyclediff.cli import main


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_option_has_help():
    missing = [f"{' '.join(path) or 'cyclediff'} {param.opts[0]}" for path, command in _commands(main)
               for param in command.params if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert len(list(_commands(main))) > 10  # the walk reaches the subcommands and groups
    assert not missing, missing


def test_each_strength_help_says_why_its_default():
    def strength_help(name: str) -> str:
        return next(p.help for p in main.commands[name].params if p.name == "strength")

    assert "text-guided editing" in strength_help("edit")
    assert "unpaired translation" in strength_help("translate") and "850" in strength_help("translate")
    assert "whole encoding" in strength_help("encode") and "decode" in strength_help("encode")
