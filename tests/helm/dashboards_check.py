#!/usr/bin/env python3
"""Checks the dashboard ConfigMaps of a `helm template` render and prints the
render with each dashboard's JSON replaced by a placeholder line.

Every dashboards/*.json of the repository must be in exactly one ConfigMap
labelled grafana_dashboard: "1", with the same bytes (the chart's dashboards/
links to the repository's). The golden files then do not change when a
dashboard is edited, while the content is still checked on every run.

usage: dashboards_check.py DASHBOARD_DIR [--expect-none] < render.yaml > normalized.yaml
Exit 1 with the differences on stderr.
"""
import json
import os
import re
import sys

import yaml


def main():
    dash_dir = sys.argv[1]
    expect_none = "--expect-none" in sys.argv[2:]
    text = sys.stdin.read()
    problems = []

    found = {}
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") != "ConfigMap":
            continue
        labels = doc["metadata"].get("labels", {})
        if labels.get("grafana_dashboard") != "1":
            continue
        for key, value in (doc.get("data") or {}).items():
            if key in found:
                problems.append(f"{key}: in two ConfigMaps")
            found[key] = value

    files = sorted(f for f in os.listdir(dash_dir) if f.endswith(".json"))
    if expect_none:
        if found:
            problems.append(f"dashboard ConfigMaps rendered although disabled: {sorted(found)}")
    else:
        for name in files:
            if name not in found:
                problems.append(f"{name}: no ConfigMap holds it")
                continue
            with open(os.path.join(dash_dir, name), encoding="utf-8") as f:
                source = f.read()
            # The template uses a `|-` block, which drops the final newline.
            if found[name] != source.rstrip("\n"):
                problems.append(f"{name}: ConfigMap content differs from {dash_dir}/{name}")
            try:
                json.loads(found[name])
            except ValueError as e:
                problems.append(f"{name}: ConfigMap content is not JSON: {e}")
        for name in sorted(set(found) - set(files)):
            problems.append(f"{name}: in a ConfigMap but not in {dash_dir}")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1

    # Replace each `  <name>.json: |-` block (lines indented deeper) by one line.
    out, skipping = [], False
    for line in text.splitlines():
        if skipping:
            if line.startswith("    ") or line == "":
                continue
            skipping = False
        m = re.match(r"^  ([A-Za-z0-9._-]+\.json): \|-?$", line)
        if m:
            out.append(f"  {m.group(1)}: <dashboards/{m.group(1)}, checked identical>")
            skipping = True
            continue
        out.append(line)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
