#!/usr/bin/env bash
# Prints every Kafka topic the event definitions list (`x-herald.event.topics` of each file in
# event-defs/), one per line, sorted: the topics herald subscribes to by default, which the
# benchmark scripts create in their own broker.
#
# Usage: bash scripts/infra/definition-topics.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python3 -c '
import json, sys
for path in sys.argv[1:]:
    for topic in json.load(open(path)).get("x-herald", {}).get("event", {}).get("topics", []):
        print(topic)
' event-defs/*.json | sort -u
