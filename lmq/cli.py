"""The ``lmq`` command line (LANGUAGE.md section 12).

Exit codes: 0 success, 1 runtime error, 2 usage, syntax or compile error, 130 interrupted.
User mistakes print the error message (with its caret snippet), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from lmq.errors import (LmqCompileError, LmqError, LmqParameterError, LmqSyntaxError)

USAGE_ERRORS = (LmqSyntaxError, LmqCompileError, LmqParameterError)


class UsageError(LmqError):
    """A bad command line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmq", description="Run and check lmq programs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a program and print its prompt")
    run.add_argument("file")
    run.add_argument("--model", help="model name or spec (smollm2, tiny-random, hf:PATH)")
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter; VALUE is parsed as JSON when it is valid JSON")
    run.add_argument("--tools", action="append", default=[], metavar="MODULE:NAME",
                     help="a Python callable passed to the program as a tool")
    run.add_argument("--seed", type=int, help="seed for sampling decoders")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    check = commands.add_parser("check", help="compile a program without loading a model")
    check.add_argument("file")
    commands.add_parser("version", help="print the version")
    return parser


def parse_args(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--arg expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


def load_tools(specs: Sequence[str]) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    for spec in specs:
        module_name, sep, name = spec.partition(":")
        if not sep or not name:
            raise UsageError(f"--tools expects MODULE:NAME, got {spec!r}")
        try:
            tools[name] = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as error:
            raise UsageError(f"cannot load tool {spec!r}: {error}") from None
    return tools


def command_check(args: argparse.Namespace) -> int:
    from lmq.api import query

    q = query(_existing(args.file))
    checked = q.checked
    print(f"{args.file}: ok")
    print(f"  decoder: {checked.decoder.name}")
    print(f"  parameters: {', '.join(checked.params) or '(none)'}")
    print(f"  tools: {', '.join(checked.tools) or '(none)'}")
    print(f"  holes: {', '.join(checked.holes) or '(none)'}")
    return 0


def command_run(args: argparse.Namespace) -> int:
    from lmq.api import query

    params = parse_args(args.arg)
    q = query(_existing(args.file), model=args.model, tools=load_tools(args.tools))
    answer = q._execute([params], fail_fast=True, seed=args.seed)[0]
    results = answer if isinstance(answer, list) else [answer]
    if args.json:
        data = [r.to_dict() for r in results]
        print(json.dumps(data if isinstance(answer, list) else data[0], ensure_ascii=False,
                         indent=2))
    else:
        for i, result in enumerate(results):
            if len(results) > 1:
                print(f"--- result {i + 1} (score {result.score:.3f})")
            print(result.prompt)
    return 0


def _existing(path: str) -> str:
    from pathlib import Path

    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and 2
    try:
        if args.command == "version":
            from lmq import __version__

            print(f"lmq {__version__}")
            return 0
        if args.command == "check":
            return command_check(args)
        return command_run(args)
    except KeyboardInterrupt:
        print("lmq: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lmq run ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except LmqError as error:
        print(str(error), file=sys.stderr)
        return 2 if isinstance(error, (*USAGE_ERRORS, UsageError)) else 1
