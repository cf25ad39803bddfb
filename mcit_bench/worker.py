"""``python -m mcit_bench.worker FILE``: one worker rank of a run that ``distributed.launch`` started.

``FILE`` holds the run's configuration (``RunConfig.to_dict()`` as JSON); the rank variables come from the
environment. The worker runs the same rank code as rank 0 (``mcit_bench.run``); it never writes the run
folder and leaves SIGINT / SIGTERM to rank 0, which stops it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import RunError, UserError

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m mcit_bench.worker CONFIG.json (started by mcit_bench.distributed.launch)",
              file=sys.stderr)
        return 2
    from .api import run
    from .config import RunConfig

    config = RunConfig(**json.loads(Path(args[0]).read_text()))
    try:
        run(config, progress=False)
    except (UserError, RunError) as exc:  # one line, as the CLI says it (rank 0 says what the run does)
        print(f"mcit-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
