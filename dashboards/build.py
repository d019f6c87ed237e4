#!/usr/bin/env python3
"""Write the Grafana dashboards of brainycp-mail as JSON files beside this script.

    python dashboards/build.py          # rewrite dashboards/*.json
    python dashboards/build.py --check  # exit 1 when a committed file is out of date

The dashboards are code so that every panel gets the same datasource, variables, unit and
description (grafana.py); fleet.py, detail.py and capacity.py hold one dashboard each. The
JSON files are what an operator imports into Grafana (Dashboards -> New -> Import),
choosing a Prometheus data source for ``$datasource``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from capacity import capacity
from detail import panel_detail
from fleet import fleet

HERE = Path(__file__).resolve().parent


DASHBOARDS = {
    "brainycp-mail-fleet.json": fleet,
    "brainycp-mail-panel.json": panel_detail,
    "brainycp-mail-capacity.json": capacity,
}


def render(name: str) -> str:
    """The JSON text of dashboard file ``name``."""
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every dashboard; exit 1 when one is stale."""
    parser = argparse.ArgumentParser(description="Write the brainycp-mail Grafana dashboards.")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path, text = HERE / name, render(name)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/build.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
