#!/usr/bin/env bash
# Prints every Kafka topic the event definitions list (`x-herald.event.topics` of each file in
# event-defs/), one per line, sorted: the topics herald subscribes to by default, which the
# benchmark scripts create in their own broker. With --notifications, prints each event's
# notification name instead (`x-herald.notification.name`, what herald's `--topic NAME=TOPIC` takes).
#
# Usage: bash scripts/infra/definition-topics.sh [--notifications]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case "${1:-}" in
  "") what=topics ;;
  --notifications) what=notifications ;;
  *) echo "usage: bash scripts/infra/definition-topics.sh [--notifications]" >&2; exit 2 ;;
esac
python3 -c '
import json, sys
what = sys.argv[1]
for path in sys.argv[2:]:
    herald = json.load(open(path)).get("x-herald", {})
    if "event" not in herald:
        continue
    if what == "topics":
        for topic in herald["event"].get("topics", []):
            print(topic)
    else:
        print(herald["notification"]["name"])
' "$what" event-defs/*.json | sort -u
