"""What the user sees: one line per step, marks and colour only on a terminal.

Colour and the ✓/✗ marks appear only when the stream is a terminal and NO_COLOR is unset
(https://no-color.org); otherwise lines start with plain words, which logs and tests can read.
"""

import os
import sys


class UI:
    def __init__(self, stream=None, color=None):
        self.stream = stream or sys.stdout
        if color is None:
            color = _is_tty(self.stream) and "NO_COLOR" not in os.environ
        self.color = color

    def _line(self, plain, mark, code, message):
        if self.color:
            prefix = "\033[%sm%s\033[0m " % (code, mark)
        else:
            prefix = plain + " "
        self.stream.write(prefix + message + "\n")
        self.stream.flush()

    def ok(self, message):
        self._line("ok:", "✓", "32", message)

    def fail(self, message):
        self._line("error:", "✗", "31", message)

    def warn(self, message):
        self._line("warning:", "!", "33", message)

    def info(self, message):
        self.stream.write(message + "\n")
        self.stream.flush()


def _is_tty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
