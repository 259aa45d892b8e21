"""`cliplab <command>`: each command is a module with `register(subparsers)` and a `run(args)`.

A user's mistake (a `CliplabError`) is one line on stderr and exit status 2; anything else is a bug,
and Python shows its traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import CliplabError
from . import classify, convert, demo, detect, embed, index, info, locate, models, search, serve, shards, train
from . import eval as eval_command

COMMANDS = (
    demo,
    models,
    info,
    convert,
    classify,
    locate,
    detect,
    eval_command,
    train,
    shards,
    embed,
    index,
    search,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cliplab", description="CLIP models: load, convert, train, evaluate, search.")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    parser.commands = subparsers.choices  # name -> its parser, to report a mistake with that command's usage
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):  # train: `key=value` overrides may come after --options too
        args.overrides += [e for e in extra if "=" in e and not e.startswith("-")]
        extra = [e for e in extra if e not in args.overrides]
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args) or 0
    except CliplabError as err:
        print(f"cliplab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`cliplab models | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped this way


def _version() -> str:
    from .. import __version__

    return f"cliplab {__version__}"


if __name__ == "__main__":
    sys.exit(main())
