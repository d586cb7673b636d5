"""What the ``dmft`` commands share: the error wrapper, output-path checks and JSON writing.

``dmft.cli`` (every command) and ``dmft.cli_sweep`` (the sweep command, also runnable on its own)
both import this module and not each other's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .result import json_safe

__all__ = ["run_command", "check_output_paths", "write_json"]

# Errors that are the user's input or a diverging run: printed as one line, exit status 2.
# (dmft.DivergenceError is a FloatingPointError; UnsupportedError a ValueError.)
USER_ERRORS = (ValueError, TypeError, FloatingPointError, FileNotFoundError)


def run_command(args, prog: str = "dmft") -> int:
    """Run the parsed command ``args.run(args)``; a bad input or a diverging run prints
    ``dmft <command>: error: <message>`` on stderr and returns 2."""
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"{prog} {args.command}: error: {error}", file=sys.stderr)
        return 2


def check_output_paths(**paths: Path | None) -> None:
    """Raise ``ValueError`` naming the flag when an output file's folder does not exist (checked
    before anything is computed, so a typo does not cost a whole run). ``paths``: flag name ->
    path or ``None`` (not requested); ``json="out/r.json"`` is reported as ``--json``."""
    for flag, path in paths.items():
        if path is None:
            continue
        folder = Path(path).expanduser().resolve().parent
        if not folder.is_dir():
            raise ValueError(
                f"--{flag.replace('_', '-')} {str(path)!r}: the folder {str(folder)!r} does not exist; create it first"
            )
        if Path(path).is_dir():
            raise ValueError(f"--{flag.replace('_', '-')} {str(path)!r} is a folder; give a file name")


def write_json(path: Path, payload) -> None:
    """Write ``payload`` as strict JSON: NaN as ``null``, infinities as ``"inf"`` (never a bare
    ``NaN``, which JSON readers reject)."""
    Path(path).write_text(json.dumps(json_safe(payload), indent=1, allow_nan=False))
