#!/usr/bin/env bash
# The demo behind `make demo`: load demo/data/ (three flat streams and a tree of releases, epics,
# features, requirements, comments and key results) into a local Aha! sandbox with one
# `meltano run`, twice, print what the sandbox holds while it still runs (the tree as a tree),
# stop it, and say what to try next.
#
#   PYTHON      python with target-aha installed (runs the sandbox and demo/show.py); default .venv
#   MELTANO     the meltano executable; default .venv-meltano/bin/meltano
#
# Everything the demo writes goes to output/demo/ (results file, key ledger, Meltano state, logs),
# so it never touches the state or ledger of your own runs, and each demo starts from scratch.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MELTANO=${MELTANO:-.venv-meltano/bin/meltano}
OUT=output/demo
TOKEN=sandbox-token

rm -rf "$OUT"
mkdir -p "$OUT"

# 1. A sandbox on a free port, stopped whatever happens next.
"$PYTHON" -m target_aha.sandbox --port 0 --token "$TOKEN" --port-file "$OUT/base_url" \
    >"$OUT/sandbox.log" 2>&1 &
SANDBOX_PID=$!
stop_sandbox() {
    if kill -0 "$SANDBOX_PID" 2>/dev/null; then
        kill -TERM "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
    fi
}
trap stop_sandbox EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
    [[ -s "$OUT/base_url" ]] && break
    if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
        echo "demo: the sandbox did not start:" >&2
        cat "$OUT/sandbox.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ ! -s "$OUT/base_url" ]]; then
    echo "demo: the sandbox did not write $OUT/base_url within 10 s" >&2
    exit 1
fi
TARGET_AHA_BASE_URL=$(cat "$OUT/base_url")
echo "Sandbox: $TARGET_AHA_BASE_URL (token: $TOKEN)"

# 2. The pipeline, configured in meltano.yml, pointed at the sandbox: job load-aha (intake
#    requests -> features, vendors -> custom table records, OKRs -> goals), then job load-tree
#    (one input of Jira-like versions, sub-tasks, stories, epics and comments, children before
#    their parents, -> releases, requirements, features, epics, comments; key results of the
#    goals load-aha made), each parent found through references (spec §12).
export TARGET_AHA_BASE_URL
export TARGET_AHA_API_KEY=$TOKEN
export TARGET_AHA_RESULTS_PATH=$OUT/aha-results.jsonl
export TARGET_AHA_LEDGER_PATH=$OUT/ledger.sqlite
export MELTANO_STATE_BACKEND_URI="file://$PWD/$OUT/state"
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

run() {  # run N TITLE ARGS...: one `meltano run`, its log in $OUT, its results tallied
    local n=$1 title=$2
    shift 2
    local log="$OUT/meltano-run-$n.log" start=$SECONDS
    echo
    echo "Run $n: $title"
    echo "  \$ meltano run $*"
    if ! "$MELTANO" run "$@" >"$log" 2>&1; then
        echo "demo: meltano run failed; the end of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    # The jobs run target-aha four times (one per tap): tally the results lines of those
    # four runs (each target-aha run names its run_id in the log and on its lines).
    "$PYTHON" demo/show.py --tally "$log" --results "$TARGET_AHA_RESULTS_PATH"
    echo "  ($((SECONDS - start)) s, log: $log)"
}

run 1 "load the sample data" load-aha load-tree
# Re-read every file (--full-refresh ignores the tap's bookmarks): the key ledger recognises
# every record as already in Aha! and unchanged, so nothing is sent and nothing is duplicated.
run 2 "load the same data again: every record should be unchanged, nothing sent" \
    --full-refresh load-aha load-tree

# 3. What a user would now see in Aha!, read while the sandbox still runs; then stop it.
echo
"$PYTHON" demo/show.py "$TARGET_AHA_BASE_URL" --results "$TARGET_AHA_RESULTS_PATH"
stop_sandbox
cat <<NEXT

The sandbox is stopped now (it keeps everything in memory only). Next steps:
  - every record's outcome, one JSON line each, with its run_id: $TARGET_AHA_RESULTS_PATH
  - run the jobs yourself against a sandbox that stays up (stop it with: kill %1):
      rm -f output/sandbox-url
      $PYTHON -m target_aha.sandbox --port-file output/sandbox-url &
      until [ -s output/sandbox-url ]; do sleep 0.1; done
      export TARGET_AHA_BASE_URL=\$(cat output/sandbox-url) TARGET_AHA_API_KEY=sandbox-token
      $MELTANO run load-aha load-tree
  - load your own Aha! account: README.md, section "Use it"
NEXT
