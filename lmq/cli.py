"""The ``lmq`` command line (LANGUAGE.md section 12).

Exit codes: 0 success, 1 runtime error (or, with ``--inputs``, some line failed), 2 usage,
syntax or compile error, 130 interrupted. User mistakes print the error message (with its
caret snippet), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmq.errors import (
    LmqCompileError,
    LmqError,
    LmqLimitError,
    LmqParameterError,
    LmqRuntimeError,
    LmqSyntaxError,
    is_out_of_memory,
    one_line,
)

USAGE_ERRORS = (LmqSyntaxError, LmqCompileError, LmqParameterError)


class UsageError(LmqError):
    """A bad command line."""


def build_parser() -> argparse.ArgumentParser:
    # -v/-q are accepted before and after the command (SUPPRESS keeps a subcommand's
    # default from overwriting what was given before it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log more (-v: progress, -vv: debugging)")
    common.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                        help="log errors only")
    parser = argparse.ArgumentParser(prog="lmq", parents=[common],
                                     description="Run and check lmq programs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", parents=[common], help="run a program",
                              description="Run a program once, or once per line of "
                              "--inputs, and print its prompt or its results.")
    run.add_argument("file")
    run.add_argument("--model", help="model name, alias or spec (smollm2, llama:FILE.gguf, "
                     "hf:PATH, llama-server:URL, vllm:URL, sglang:URL)")
    run.add_argument("--decoder", help="decoder, e.g. 'sample(n=2, temperature=0.7)'")
    run.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter; VALUE is parsed as JSON when it is valid JSON "
                     "(with --inputs: a default for every line)")
    run.add_argument("--tools", action="append", default=[], metavar="MODULE:NAME",
                     help="a Python callable passed to the program as a tool "
                     "(MODULE may be a dotted module name or a path/to/file.py)")
    run.add_argument("--seed", type=int, help="seed for sampling decoders")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--trace", metavar="FILE", help="write every model call as JSON to FILE")
    run.add_argument("--inputs", metavar="IN.jsonl",
                     help="run one instance per line (a JSON object of parameters)")
    run.add_argument("--output", metavar="OUT.jsonl",
                     help="with --inputs: write result lines here (default: stdout)")
    run.add_argument("--batch-size", type=int, metavar="N",
                     help="with --inputs: instances decoded together (default 16)")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="wall-clock limit per program instance (limits.timeout)")
    run.add_argument("--max-steps", type=int, metavar="N",
                     help="statements and loop iterations per instance (limits.steps)")
    check = commands.add_parser("check", parents=[common],
                                help="compile a program without loading a model")
    check.add_argument("file")
    commands.add_parser("models", parents=[common],
                        help="list the known models and configured aliases")
    commands.add_parser("version", parents=[common], help="print the version")
    return parser


def setup_logging(args: argparse.Namespace) -> None:
    """Log level: -q, -v/-vv, else ``LMQ_LOG_LEVEL``, else the configuration, else
    WARNING. Messages go to stderr as ``lmq: LEVEL: message``."""
    from lmq.config import log_level

    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", 0)
    if quiet:
        level: int | str = logging.ERROR
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    else:
        level = log_level()
        if not isinstance(logging.getLevelName(level), int):
            raise UsageError(f"unknown log level {level!r} (LMQ_LOG_LEVEL or log_level)",
                             hint="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    logger = logging.getLogger("lmq")
    logger.setLevel(level)
    if not any(isinstance(h, CliLogHandler) for h in logger.handlers):
        handler = CliLogHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("lmq: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


class CliLogHandler(logging.StreamHandler):
    """The command line's log output on stderr (installed once per process)."""


def parse_args(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--arg expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or JSON Python cannot hold
            params[name] = value
    return params


def load_tools(specs: Sequence[str]) -> dict[str, Any]:
    """``MODULE:NAME`` (a module importable from the current directory too) or
    ``path/to/file.py:NAME``."""
    tools: dict[str, Any] = {}
    for spec in specs:
        module_name, sep, name = spec.rpartition(":")
        if not sep or not module_name or not name:
            raise UsageError(f"--tools expects MODULE:NAME, got {spec!r}")
        try:
            if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
                module = _load_file(Path(module_name))
            else:
                if os.getcwd() not in sys.path:  # as `python -m` would
                    sys.path.append(os.getcwd())
                module = importlib.import_module(module_name)
            tools[name] = getattr(module, name)
        except (ImportError, AttributeError, OSError) as error:
            raise UsageError(f"cannot load tool {spec!r}: {error}") from None
        except Exception as error:  # the tool's module does not compile, or raises
            message = error.msg if isinstance(error, SyntaxError) else str(error)
            raise UsageError(f"cannot load tool {spec!r}: {_where(error)}"
                             f"{type(error).__name__}: {message}") from None
    return tools


def _where(error: BaseException) -> str:
    """``FILE:LINE: `` of a syntax error, or of the last frame of a module's code that
    raised while it was imported (the frames of Python's import machinery skipped)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}: "
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if "importlib" not in frame.filename and frame.filename != __file__]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise ImportError(f"no such file: {path}")
    module_name = f"lmq_tools_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ commands


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


def command_models(args: argparse.Namespace) -> int:
    from lmq.config import default_model_name, load_config
    from lmq.runtime.backends.registry import known_models

    config = load_config()
    default = default_model_name(config)
    origin = ("LMQ_MODEL" if os.environ.get("LMQ_MODEL") else str(config.path)
              if config.model else "built-in default")
    print(f"default model: {default} (from {origin})")
    for info in known_models():
        state = ("cached" if info.cached else "installed" if info.installed
                 else "not installed")
        print(f"{info.name:18} {state:14} {info.description}")
        print(f"{'':18} source: {info.source}")
        if info.cache_path:
            print(f"{'':18} cache:  {info.cache_path}")
    if config.models:
        print(f"aliases (from {config.path}):")
        for name, spec in config.models.items():
            print(f"  {name} -> {spec}")
    if config.specialists:
        print(f"specialists (from {config.path}):")
        for name, specialist in config.specialists.items():
            about = specialist.description or specialist.system or ""
            print(f"  {name} -> {specialist.model or '(the run model)'}"
                  + (f": {about[:60]}" if about else ""))
    print("specs: hf:PATH (a transformers folder), gguf:FILE (converted once into the cache), "
          "llama:FILE (a GGUF file on llama.cpp)")
    return 0


def command_run(args: argparse.Namespace) -> int:
    from lmq.api import query
    from lmq.cli_inputs import run_inputs

    params = parse_args(args.arg)
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError("--batch-size must be a positive integer")
    if (args.output or args.batch_size) and not args.inputs:
        raise UsageError("--output and --batch-size need --inputs")
    check_outputs(args)
    q = query(_existing(args.file), model=args.model, tools=load_tools(args.tools),
              decoder=args.decoder, limits=_limits(args))
    if args.inputs:
        return run_inputs(q, args, params)
    stats: dict[str, Any] = {}
    trace: list[dict[str, Any]] = []
    answer = q.execute([q.bind((), params)], fail_fast=True, seed=args.seed, stats=stats,
                        trace=trace)[0]
    results = answer if isinstance(answer, list) else [answer]
    if args.trace:
        write_trace(args.trace, trace, stats)
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


def _limits(args: argparse.Namespace) -> Any:
    """The ``Limits`` of ``--timeout``/``--max-steps`` (None: the defaults)."""
    from dataclasses import replace

    from lmq.limits import Limits

    changes = {name: value for name, value in
               (("timeout", args.timeout), ("steps", args.max_steps)) if value is not None}
    try:
        return replace(Limits(), **changes) if changes else None
    except LmqError as error:
        raise UsageError(str(error).replace("limits.timeout", "--timeout")
                         .replace("limits.steps", "--max-steps")) from None


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output (``--output``, ``--trace``) that is one of the inputs (the program,
    ``--inputs``, a ``--tools`` file) or the other output: the same file, also through a
    link, would be overwritten while it is read."""
    inputs = {"the program": args.file, "--inputs": args.inputs}
    inputs.update({f"--tools {spec}": spec.rpartition(":")[0] for spec in args.tools})
    outputs = {"--output": args.output, "--trace": args.trace}
    for flag, output in outputs.items():
        if not output or not Path(output).exists():
            continue
        others = {**inputs, **{f: o for f, o in outputs.items() if f != flag}}
        for what, path in others.items():
            if path and path != "-" and Path(path).exists() and _same(output, path):
                raise UsageError(f"{flag} {output} is {what} ({path}); it would be "
                                 "overwritten", hint="write to another file")


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_trace(path: str, trace: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    """Write the trace to a temporary file renamed over ``path``: a full disk leaves no
    partial file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(json.dumps({"calls": trace, "stats": stats}, indent=2,
                                        ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise LmqRuntimeError(f"cannot write the trace {path}: {error.strerror or error}"
                              ) from None


def _existing(path: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    return path


def _command(args: argparse.Namespace) -> int:
    setup_logging(args)
    if args.command == "version":
        from lmq import __version__

        print(f"lmq {__version__}")
        return 0
    if args.command == "check":
        return command_check(args)
    if args.command == "models":
        return command_models(args)
    return command_run(args)


def _interrupted(signum: int, frame: Any) -> None:
    """The first Ctrl-C stops the command; later ones, while it stops and Python exits,
    are ignored (they would interrupt the shutdown with a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # text the terminal cannot show is escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupted) if main_thread else None
    try:
        code = _command(args)
        sys.stdout.flush()  # a full disk shows now, as an error, not at exit
    except KeyboardInterrupt:
        print("lmq: interrupted", file=sys.stderr)
        return 130  # SIGINT stays ignored: the process is ending
    except BrokenPipeError:  # `lmq run ... | head`: the reader left; not an error of ours
        _drop_stdout()
        code = 0
    except OSError as error:  # standard output cannot be written (a full disk)
        _drop_stdout()
        print(f"error: cannot write the output: {error.strerror or error}", file=sys.stderr)
        code = 1
    except LmqError as error:
        print(str(error), file=sys.stderr)
        code = 2 if isinstance(error, (*USAGE_ERRORS, UsageError)) else 1
    except Exception as error:  # the last line of defence: the process ran out of memory
        if not is_out_of_memory(error):
            raise
        print(LmqLimitError(f"ran out of memory while running the command ({one_line(error)})"),
              file=sys.stderr)
        code = 1
    if main_thread:
        signal.signal(signal.SIGINT, previous)
    return code


def _drop_stdout() -> None:
    """No second error when Python flushes standard output at exit."""
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - open for the process
    except OSError:
        pass
