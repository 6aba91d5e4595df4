"""Splits a server's runtime worker samples by the part of herald their call stack passes through
(the first marker found, in this order), from a `perf record --call-graph fp` file of a build with
frame pointers:

    python3 stacks.py <perf.data>

Stacks that enter libc's `send` lose their callers (libc has no frame pointers); they are counted
apart, as the socket writes they are.
"""

import collections
import subprocess
import sys

MARKERS = [
    ("parking a worker", "park_internal"),
    ("waking a worker", "Unparker::unpark"),
    ("socket loops (ws::serve)", "ws::serve"),
    ("hub fan-out", "hub::Hub::deliver"),
    ("Redis subscriber", "subscriber"),
    ("record path (Kafka::work)", "Kafka::work"),
    ("Kafka consumer loop (Kafka::run)", "Kafka::run"),
    ("publisher calls", "publisher::run"),
    ("Redis connection (writes, replies)", "multiplexed_connection"),
    ("Redis subscriber connection", "pubsub"),
]
WORK = [
    ("parse and validate (prepare)", "Kafka::prepare"),
    ("order keys", "KeyedOrder"),
    ("pipeline (keys, message, hand-off)", "Pipeline::deliver"),
    ("Notification::build (data, digest)", "Notification::build"),
    ("FuturesUnordered and moves", "FuturesUnordered"),
]


def main(path: str) -> None:
    script = subprocess.run(
        ["perf", "script", "-i", path, "--comm", "tokio-rt-worker", "-F", "ip,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    stacks = [stack for stack in script.split("\n\n") if stack.strip()]
    parts: collections.Counter = collections.Counter()
    work: collections.Counter = collections.Counter()
    for stack in stacks:
        if "__send" in stack:
            parts["socket writes (send)"] += 1
            continue
        part = next((name for name, marker in MARKERS if marker in stack), "other")
        parts[part] += 1
        if part.startswith("record path"):
            frames = stack.strip().split("\n")
            above = frames[: next(i for i, frame in enumerate(frames) if "Kafka::work" in frame)]
            work[next((name for name, marker in WORK if any(marker in frame for frame in above)), "the rest")] += 1
    print(f"{len(stacks)} samples of the runtime's workers")
    for name, count in parts.most_common():
        print(f"  {name:36s} {100 * count / len(stacks):5.1f}%")
    print("record path:")
    for name, count in work.most_common():
        print(f"  {name:36s} {100 * count / len(stacks):5.1f}%")


if __name__ == "__main__":
    main(sys.argv[1])
