"""The outage replays' figures for a closing note or an operator: with
BW_OUTAGE_REPORT=FILE set, each replay appends one JSON line (scenario,
requests sent, 5xx seen, and what /status said)."""
import json
import os


def outage(scenario, requests, five_xx, status_excerpt):
    path = os.environ.get("BW_OUTAGE_REPORT")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"scenario": scenario, "requests": requests, "5xx": five_xx,
                            "status": status_excerpt}) + "\n")
