"""Logging in glog's line format, which Caffe's tools (parse_log.py) and users recognise."""
from __future__ import annotations

import logging
import os
import sys
import time

logger = logging.getLogger("caffeish")


class GlogFormatter(logging.Formatter):
    LEVELS = {"DEBUG": "I", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "F"}

    def format(self, record):
        t = time.localtime(record.created)
        us = int((record.created - int(record.created)) * 1e6)
        prefix = (f"{self.LEVELS.get(record.levelname, 'I')}{t.tm_mon:02d}{t.tm_mday:02d} "
                  f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{us:06d} {os.getpid():5d} "
                  f"{record.module}.py:{record.lineno}] ")
        return prefix + record.getMessage()


def setup_logging(level=logging.INFO, stream=None, logfile=None):
    """Send caffeish's log to ``stream`` (stderr) and optionally a file, in glog format."""
    logger.setLevel(level)
    for h in list(logger.handlers):
        if getattr(h, "_caffeish", False):
            logger.removeHandler(h)
            h.close()
    handlers = [logging.StreamHandler(stream or sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    for h in handlers:
        h.setFormatter(GlogFormatter())
        h._caffeish = True
        logger.addHandler(h)
    logger.propagate = False
    return logger
