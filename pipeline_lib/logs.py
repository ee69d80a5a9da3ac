"""Logging for pipeline scripts: to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

_log = logging.getLogger("genfields")


def configure(log_path=None, level=logging.INFO) -> logging.Logger:
    """Send records to stderr and, where given, to the rule's log file.

    It also routes uncaught exceptions (of the main thread and of other threads) through the
    log before Python's default handling: otherwise a failed job's traceback goes only to
    stderr, and a SLURM user who opens the rule's log finds it empty.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    _install_excepthooks(log_path)
    return _log


def _file_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _log_to_files(message: str, exc_info) -> None:
    """Write the traceback to the log files only: the default hook prints it to stderr anyway,
    and logging it to the stderr handler as well would show it twice."""
    for handler in _file_handlers():
        record = _log.makeRecord(_log.name, logging.ERROR, "(uncaught)", 0, message, None, exc_info)
        handler.handle(record)  # a failing emit goes to handleError: it cannot hide the original error
        handler.flush()


def _install_excepthooks(log_path) -> None:
    """Chain onto the hooks Python had when the module was first configured (not onto ours)."""
    default_hook = getattr(_install_excepthooks, "_default", None) or sys.excepthook
    default_thread_hook = getattr(_install_excepthooks, "_default_thread", None) or threading.excepthook
    _install_excepthooks._default = default_hook
    _install_excepthooks._default_thread = default_thread_hook

    def excepthook(exc_type, exc, tb):
        if not issubclass(exc_type, KeyboardInterrupt):
            _log_to_files(f"uncaught {exc_type.__name__}, the job fails:", (exc_type, exc, tb))
        default_hook(exc_type, exc, tb)

    def thread_excepthook(args):
        if args.exc_type is not SystemExit:
            name = args.thread.name if args.thread is not None else "?"
            _log_to_files(
                f"uncaught {args.exc_type.__name__} in thread {name}:",
                (args.exc_type, args.exc_value, args.exc_traceback),
            )
        default_thread_hook(args)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
