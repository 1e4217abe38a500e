"""``python -m interpret VERB MODEL [...]``: one subcommand per interpreter.

Each verb lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> Path | None`` (what it wrote; None when it only printed), and optionally
``kept_on_interrupt(args) -> str | None`` (what an interrupted run leaves for resuming). Its
``--out`` (a directory; replaced only with ``--force``) is checked here before any work. Bad
input raises one of ``interpret.core.errors.user_errors()`` and is reported here in one line,
exit status 2; Ctrl-C prints one line, exit status 130. Only the chosen verb's module is
imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import NoReturn

from envs import _quiet  # noqa: F401  (before anything imports old gym)

# verb -> (module, one-line help). A new interpreter is one new line here.
VERBS: dict[str, tuple[str, str]] = {
    "attribute": ("interpret.attribution.command", "integrated gradients, NMF features: a report"),
    "audit": ("interpret.audit.command", "play N CoinRun levels: failures by cause, a report"),
    "compare": ("interpret.audit.compare_command", "two models on the same levels: failure tables"),
    "occlude": (
        "interpret.occlusion.command",
        "CoinRun: how the policy reacts when an object class is not drawn",
    ),
    "edit": ("interpret.editing.command", "blind a policy to NMF features: a new run directory"),
    "dissect": (
        "interpret.dissection.command",
        "unit statistics, activation maps and interventions",
    ),
    "imagine": (
        "interpret.imagination.command",
        "decode a recurrent model's imagined states (GoL, World Models)",
    ),
    "synthesize": ("interpret.synthesis.command", "generate states of interest for an agent"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m interpret``; only the verb named in `argv` (its first word)
    has its module imported and its options added: the others are never parsed."""
    words = sys.argv[1:] if argv is None else argv
    chosen = next((w for w in words if not w.startswith("-")), None)
    parser = OneLineParser(prog="python -m interpret", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)
    for verb, (module_name, help_text) in VERBS.items():
        if verb != chosen:
            sub.add_parser(verb, help=help_text)
            continue
        module = importlib.import_module(module_name)
        verb_parser = sub.add_parser(
            verb,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from agents.outputs import check_output
    from agents.runtime import keep_freed_memory, one_line_warnings
    from interpret.core.errors import user_errors

    prog = "python -m interpret"
    try:
        args = build_parser(argv).parse_args(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing written", file=sys.stderr)
        return 130
    prog = f"{prog} {args.verb}"
    one_line_warnings(prog)
    keep_freed_memory()  # backward passes reuse freed buffers: ~1.8x faster attribution on CPU
    try:
        if getattr(args, "out", None) is not None:
            check_output(args.out, force=args.force)  # before any work
        out: Path | None = args._module.run(args)
    except user_errors() as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a disk that filled up, a file system gone read-only, ...
        where = f": {err.filename}" if err.filename else ""
        print(f"{prog}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = getattr(args._module, "kept_on_interrupt", lambda _: None)(args)
        print(f"{prog}: interrupted; {kept or 'nothing written'}", file=sys.stderr)
        return 130
    if out is not None:
        print(f"wrote {out}")
    return 0
