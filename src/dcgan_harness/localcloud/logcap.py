"""A process's log kept within bounds: its first lines and its last lines.

A playbook can print without end (a loop over a huge variable, a failed
command whose megabytes of output Ansible dumps as one line). What is kept is
the beginning, which shows what the play did first, and the end, which holds
the failure and the recap, with one line saying how much was dropped between
them. Lines are cut as they come, so no line, however long, is ever held
whole in memory.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

# On disk, per log: a complete play of the assignment prints far less, and
# a class of floods still fits on the grading machine.
MAX_LOG_BYTES = 4 * 1024 * 1024
# In memory, per log, the end: the failed task and the recap that close a
# play (what the grader reads to name the failure) with room to spare; small
# enough that many jobs at once cost little.
TAIL_BYTES = 256 * 1024
# In memory, per log, the beginning, for whoever reads the log as text.
MEMORY_HEAD_BYTES = 64 * 1024
# Longer lines are dumped task results; their start holds Ansible's msg and
# rc (it sorts the keys), the rest is the command's own output.
MAX_LINE_BYTES = 64 * 1024
# Room for the line that says what was dropped.
MARK_ROOM = 256


class CappedLog:
    """Lines of a stream, as they come: the first go to `path` while it has room; the last
    are kept in memory and follow them when the log is closed.

    Thread-safe: one thread feeds and closes, another may read text().
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = MAX_LOG_BYTES,
        tail_bytes: int = TAIL_BYTES,
        memory_head_bytes: int = MEMORY_HEAD_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        on_line=None,
    ):
        if tail_bytes < max_line_bytes + MARK_ROOM or max_bytes < tail_bytes + MARK_ROOM:
            raise ValueError("the tail must hold a whole line, and the file the tail")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._disk_room = max_bytes - tail_bytes - MARK_ROOM
        self._tail_room = tail_bytes
        self._memory_room = memory_head_bytes
        self._max_line = max_line_bytes
        self._on_line = on_line
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._cut = 0  # bytes of the pending line beyond max_line_bytes
        self.lines = 0  # every line seen, and their bytes with newlines
        self.bytes = 0
        self._disk_lines = self._disk_bytes = 0  # the first lines, on disk as they come
        self._disk_full = False
        self._head: list[bytes] = []  # the first lines, in memory
        self._head_bytes = 0
        self._tail: deque[tuple[int, bytes]] = deque()  # (line number, line), the last lines
        self._tail_bytes = 0
        self._closed = False

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                self._extend(chunk[start:] if end < 0 else chunk[start:end])
                if end < 0:
                    return
                self._end_line()
                start = end + 1

    def close(self) -> None:
        """Write the last lines after the first, with a line for what was dropped between."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pending or self._cut:
                self._end_line()
            for line in self._rest(self._disk_lines, self._disk_bytes):
                self._file.write(line + b"\n")
            self._file.close()

    def text(self) -> str:
        """The first MEMORY_HEAD_BYTES and the last TAIL_BYTES of the lines seen so far."""
        with self._lock:
            lines = self._head + self._rest(len(self._head), self._head_bytes)
        return "".join(line.decode(errors="replace") + "\n" for line in lines)

    def _extend(self, piece: bytes) -> None:
        room = max(0, self._max_line - len(self._pending))
        self._pending += piece[:room]
        self._cut += max(0, len(piece) - room)

    def _end_line(self) -> None:
        line = bytes(self._pending)
        if self._cut:
            line += f" [... {self._cut} more bytes of this line dropped]".encode()
        self._pending.clear()
        self._cut = 0
        self._add(line)
        if self._on_line:
            self._on_line(line.decode(errors="replace"))

    def _add(self, line: bytes) -> None:
        number, size = self.lines, len(line) + 1
        self.lines += 1
        self.bytes += size
        if len(self._head) == number and self._head_bytes + size <= self._memory_room:
            self._head.append(line)
            self._head_bytes += size
        if not self._disk_full and self._disk_bytes + size <= self._disk_room:
            self._file.write(line + b"\n")
            self._file.flush()
            self._disk_lines += 1
            self._disk_bytes += size
        else:
            self._disk_full = True  # the lines on disk stay the first ones, in order
        self._tail.append((number, line))
        self._tail_bytes += size
        while self._tail_bytes > self._tail_room:
            self._tail_bytes -= len(self._tail.popleft()[1]) + 1

    def _rest(self, kept_lines: int, kept_bytes: int) -> list[bytes]:
        """What follows the first kept_lines: a line for those dropped, then the last lines."""
        tail = [line for number, line in self._tail if number >= kept_lines]
        first = self.lines - len(tail)
        if first == kept_lines:
            return tail
        dropped_bytes = self.bytes - kept_bytes - sum(len(line) + 1 for line in tail)
        mark = f"[... {first - kept_lines} line(s), {_size(dropped_bytes)}, dropped here; the last {_size(self._tail_room)} follow ...]"
        return [mark.encode(), *tail]


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} bytes"


# Run inside a container in front of its command: the container's own output
# (which Docker keeps in its log) is then the head and tail alone, so Docker
# never rotates its log under a reader, which loses and repeats lines.
# Arguments: head bytes, tail bytes, the command. Exits with the command's status.
IN_CONTAINER_CAP = """
import collections, signal, subprocess, sys
head, tail = int(sys.argv[1]), int(sys.argv[2])
child = subprocess.Popen(sys.argv[3:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out, written, live = sys.stdout.buffer, 0, True
kept, kept_bytes, dropped = collections.deque(), 0, 0

def finish(status):
    if dropped:
        out.write(b"[... %d line(s) dropped here by the controller ...]\\n" % dropped)
    out.writelines(kept)
    out.flush()
    sys.exit(status)

# Stopped at its time limit, the end is still written.
signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), finish(143)))
for line in iter(lambda: child.stdout.readline(65536), b""):
    if live and written + len(line) <= head:
        out.write(line)
        out.flush()
        written += len(line)
        continue
    live = False
    kept.append(line)
    kept_bytes += len(line)
    while kept_bytes > tail:
        kept_bytes -= len(kept.popleft())
        dropped += 1
finish(child.wait())
"""


# What passes the container's cap fits the log's own whole, so only one cut is ever made.
CONTAINER_HEAD_BYTES = MAX_LOG_BYTES - 2 * (TAIL_BYTES + MARK_ROOM)


def capped_command(command: list[str], head: int = CONTAINER_HEAD_BYTES, tail: int = TAIL_BYTES) -> list[str]:
    """command, with its output cut to its first `head` and last `tail` bytes inside the container."""
    return ["python3", "-c", IN_CONTAINER_CAP, str(head), str(tail), *command]
