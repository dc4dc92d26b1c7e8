"""The ``mobiletasks`` command. Each sub-command is a function ``argv -> exit code``, found in a table."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from . import summary

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "summary": summary.main,
    "list": summary.list_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        usage = "usage: mobiletasks {" + ",".join(COMMANDS) + "} ...  (mobiletasks COMMAND --help for more)"
        if args and args[0] not in ("-h", "--help"):
            print(f"{usage}\nmobiletasks: error: unknown command {args[0]!r}", file=sys.stderr)
            return 2
        print(usage)
        return 0 if args else 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
