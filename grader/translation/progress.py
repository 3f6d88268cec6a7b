"""Progress lines of the translation job: written by the worker, shown by the judge.

The trusted loop in the worker (``job.py``) writes one line to its stderr every few seconds::

    grader-progress: phase=train step=120 loss=3.4120 elapsed=35.2

(``phase=decode`` once training is over). The judge captures the worker's stderr into a file
(``grader/sandbox/process.py``) and, while it waits for the job's reply, reads the tail of that
file and shows the last such line (``grading.py``). The line is *display only*: a student's
``print`` can write one too, so nothing here is ever used for scoring, and ``parse`` keeps only
bounded numbers and a known phase — no text from the worker reaches the terminal.

Worker-safe: the standard library only (the worker's copy of ``grader/translation`` has it).
"""

from __future__ import annotations

import math
import re
import sys
import time

PREFIX = "grader-progress:"
PHASES = ("train", "decode")
MAX_STEP = 10**9
MAX_SECONDS = 10**7
MAX_LOSS = 10**6
_LINE = re.compile(r"^grader-progress: phase=(train|decode)((?: [a-z_]+=[0-9.eE+-]{1,24}){0,8})[ \t]*\r?$", re.M)
_FIELD = re.compile(r"([a-z_]+)=([0-9.eE+-]{1,24})")
_LIMITS = {"step": MAX_STEP, "elapsed": MAX_SECONDS, "loss": MAX_LOSS}


def format_duration(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:05`` (training and grade-all progress)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def format_line(phase: str, step: int, loss: float | None, elapsed: float) -> str:
    """One progress line (no newline)."""
    fields = [f"phase={phase}", f"step={int(step)}"]
    if loss is not None and math.isfinite(loss):
        fields.append(f"loss={loss:.4f}")
    fields.append(f"elapsed={elapsed:.1f}")
    return f"{PREFIX} " + " ".join(fields)


def parse(text: str) -> dict | None:
    """The last well-formed progress line in ``text`` as ``{"phase", "step", "loss", "elapsed"}``
    (loss None when absent), or None. Values out of range or not finite make a line invalid."""
    for match in reversed(list(_LINE.finditer(text or ""))):
        info: dict = {"phase": match.group(1), "step": 0, "loss": None, "elapsed": 0.0}
        try:
            for key, raw in _FIELD.findall(match.group(2)):
                if key not in _LIMITS:
                    continue
                value = float(raw)
                if not math.isfinite(value) or not 0 <= value <= _LIMITS[key]:
                    raise ValueError(key)
                info[key] = int(value) if key == "step" else value
        except ValueError:
            continue
        return info
    return None


class StderrProgress:
    """``train_model(progress=...)`` callback: a progress line on stderr at most every
    ``every`` seconds (the first step always), so that the judge can show the training."""

    def __init__(self, every: float = 2.0, stream=None, clock=time.monotonic):
        self.every = every
        self.stream = stream
        self.clock = clock
        self.last = None

    def write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # a full or closed stderr never stops the training
            pass

    def __call__(self, info: dict) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            return
        self.last = now
        self.write(format_line("train", info.get("step", 0), info.get("loss"), float(info.get("elapsed", 0.0))))

    def decoding(self, step: int, elapsed: float) -> None:
        self.write(format_line("decode", step, None, elapsed))
