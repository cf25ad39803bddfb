"""Library chatter goes to the run's log file, not the console.

Lightning prints banners ("GPU available", "TPU available"), tips (the litlogger advert), deprecation
warnings and a "`Trainer.fit` stopped" line on every fit; transformers and datasets draw their own
loading bars. During a run all of that is written to ``<run_dir>/logs/console.log`` instead, so the
console shows the harness's own progress and results only. Nothing is dropped: every record and
warning is kept in the file. Warnings raised outside installed libraries (mcit-bench itself, a method
plugin) still reach the console as well, deprecations excepted: they are meant for the user.
"""
from __future__ import annotations

import logging
import sysconfig
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOG_FILE = Path("logs") / "console.log"
# Loggers that write to the console on their own (a handler of their own, propagate=False).
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "transformers", "datasets", "peft",
                   "torch", "py.warnings")
_LIBRARY_DIRS = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")})
_QUIET_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)




def _own_dirs() -> tuple[str, ...]:
    """Folders of mcit-bench's own packages (``methods`` and ``benchmarks`` live beside ``mcit_bench``)."""
    import importlib.util

    dirs = []
    for name in ("mcit_bench", "mcit_bench.methods", "mcit_bench.benchmarks"):
        spec = importlib.util.find_spec(name)
        dirs += list(spec.submodule_search_locations or []) if spec else []
    return tuple(dirs)


def shown_on_console(category: type[Warning], filename: str, own: tuple[str, ...] = ()) -> bool:
    """A warning for the user: raised by mcit-bench (``own`` folders) or outside installed libraries and
    the standard library (a plugin), and not a deprecation."""
    in_library = "site-packages" in filename or "dist-packages" in filename or filename.startswith(_LIBRARY_DIRS)
    return (filename.startswith(own) or not in_library) and not issubclass(category, _QUIET_CATEGORIES)


@contextmanager
def library_output_to_log(run_dir: Path, to_file: bool = True) -> Iterator[Path]:
    """Within the block, library log records and Python warnings go to ``run_dir/logs/console.log``
    (``to_file=False``: nowhere, for the ranks of a multi-process run that do not write the folder)."""
    # Configure the libraries' own handlers first, so that they are replaced below rather than added later.
    import datasets.utils.logging
    import transformers.utils.logging

    transformers.utils.logging.get_logger("transformers")
    path = Path(run_dir) / LOG_FILE
    if to_file:
        path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8") if to_file else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = [(logging.getLogger(n), logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
             for n in LIBRARY_LOGGERS]
    for logger, _, _ in saved:
        logger.handlers = [handler]
        logger.propagate = False
    # A root handler also keeps Lightning (imported later, if at all) from adding its console handler:
    # it adds one only while the root logger has none.
    root.addHandler(handler)
    bar_modules = (transformers.utils.logging, datasets.utils.logging)
    bars_were_on = [m.is_progress_bar_enabled() for m in bar_modules]
    for module in bar_modules:
        module.disable_progress_bar()
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards
            console_showwarning = warnings.showwarning
            log, own = logging.getLogger("py.warnings"), _own_dirs()

            def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
                log.warning(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
                if shown_on_console(category, str(filename), own):
                    console_showwarning(message, category, filename, lineno, file, line)

            warnings.showwarning = showwarning
            yield path
    finally:
        root.removeHandler(handler)
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        for module, was_on in zip(bar_modules, bars_were_on):
            if was_on:
                module.enable_progress_bar()
        handler.close()
