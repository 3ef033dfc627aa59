"""Peak memory of the running process alone (free of compattr imports: shapiq's environment
imports it too)."""

from __future__ import annotations

import resource
import sys


def peak_mb() -> float:
    """This process's peak resident memory in MB since its program started.

    On Linux, ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would also count the process
    it was forked from (a process spawned by a 700 MB parent reports at least 700 MB however
    little it uses). Elsewhere, ``ru_maxrss`` (bytes on macOS, kB on Linux and BSD).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
