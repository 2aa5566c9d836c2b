"""The CLI imports only the subcommand it runs (start-up), and the parser
it builds for one subcommand behaves as the whole one does for it."""

import doctest
import subprocess
import sys

import pytest

import pmemtrace.cli as cli
from pmemtrace.cli import COMMANDS, _command_in, make_parser


def _sub_help(parser, name):
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name].format_help()


@pytest.mark.parametrize("name", COMMANDS)
def test_one_subcommand_parser_matches_the_whole(name):
    assert _sub_help(make_parser(name), name) == _sub_help(make_parser(), name)


def test_command_word():
    assert _command_in(["-v", "-q", "replay", "x.dat", "--json"]) == "replay"
    assert _command_in(["--version"]) is None
    assert _command_in(["--", "replay"]) is None
    assert _command_in(["replayy"]) is None  # argparse's "invalid choice" names them all
    assert _command_in([]) is None
    assert doctest.testmod(cli).failed == 0


def test_replay_loads_no_other_subcommand():
    code = (
        "import sys; from pmemtrace.cli import main\n"
        "try:\n    main(['replay', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('pmemtrace.cli.') or m in ('tabulate', 'msgspec')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert loaded == "['pmemtrace.cli._common', 'pmemtrace.cli.replay']", loaded


def test_top_level_help_and_unknown_command_still_list_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["nosuch"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "diagnose" in err
