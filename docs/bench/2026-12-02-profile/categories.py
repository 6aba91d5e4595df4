"""Groups the samples of a `perf record` file by thread and by library, and converts each group's
share into µs per event.

    python3 categories.py <perf.data> <the run's CPU µs per event>

A sample goes to the first rule its library or symbol matches; "binary" is whatever else is in the
server's own executable (its code, and the librdkafka and other C code linked into it).
"""

import collections
import re
import subprocess
import sys

RULES = [
    ("kernel", r"\[kernel"),
    ("allocator", r"rjem|malloc|_int_|free|calloc|realloc|tcache|arena"),
    ("memmove/memcmp", r"memmove|memcmp|memcpy|memset"),
    ("tokio", r"tokio::|tokio_util"),
    ("futures-util", r"futures_"),
    ("serde_json", r"serde_json|serde_core|serde::"),
    ("redis client", r"redis::|combine::"),
    ("binary", r"herald"),
    ("pthread", r"pthread|futex"),
    ("vdso", r"vdso|clock_gettime"),
]
LINE = re.compile(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)")


def main(path: str, us_per_event: float) -> None:
    report = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "comm,dso,sym", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    groups: collections.Counter = collections.Counter()
    for line in report.splitlines():
        matched = LINE.match(line)
        if not matched:
            continue
        share, thread, library, symbol = float(matched[1]), matched[2], matched[3], matched[4]
        text = f"{library} {symbol}"
        group = next((name for name, rule in RULES if re.search(rule, text)), "other")
        groups[(thread[:12], group)] += share
    for (thread, group), share in groups.most_common():
        if share > 0.5:
            print(f"{thread:14s} {group:16s} {share:6.2f}%  {share * us_per_event / 100:6.2f} µs/event")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
