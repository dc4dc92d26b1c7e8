"""The ``mobiletasks`` command. Each sub-command is a function ``argv -> exit code``, found in a table.

Sub-commands import their modules only when run, so ``mobiletasks summary`` does not pay for Lightning.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# command -> (module under mobiletasks.cli, function name)
_COMMANDS: dict[str, tuple[str, str]] = {
    "summary": ("summary", "main"),
    "list": ("summary", "list_main"),
    "evaluate": ("evaluate", "main"),
    "data": ("data", "main"),
    "fit": ("lightning", "main"),
    "validate": ("lightning", "main"),
    "test": ("lightning", "main"),
    "predict": ("lightning", "main"),
    "export": ("export", "main"),
    "infer": ("infer", "main"),
}


def command(name: str) -> Callable[[list[str]], int]:
    module, function = _COMMANDS[name]
    fn: Callable[[list[str]], int] = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _COMMANDS:
        usage = "usage: mobiletasks {" + ",".join(_COMMANDS) + "} ...  (mobiletasks COMMAND --help for more)"
        if args and args[0] not in ("-h", "--help"):
            print(f"{usage}\nmobiletasks: error: unknown command {args[0]!r}", file=sys.stderr)
            return 2
        print(usage)
        return 0 if args else 2
    name = args[0]
    # the Lightning commands keep their sub-command name: LightningCLI parses it
    return command(name)(args if _COMMANDS[name][0] == "lightning" else args[1:])


if __name__ == "__main__":
    sys.exit(main())
