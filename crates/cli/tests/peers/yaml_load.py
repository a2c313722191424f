"""Loads YAML files with two parsers other than Latchkey's: ruamel.yaml (YAML 1.2, the version
Latchkey reads) and PyYAML's safe_load (YAML 1.1, what most users' tools use). Prints one JSON
object: {path: {"ruamel": data or {"error": message}, "pyyaml": ...}}.

Usage: yaml_load.py FILE...
"""

import datetime
import json
import sys

import yaml
from ruamel.yaml import YAML


def plain(value):
    """JSON-ready: dates (a YAML 1.1 reading of 2024-01-01) become text, as they are in 1.2."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return {"unexpected date": value.isoformat()}
    return value


def main():
    ruamel = YAML(typ="safe", pure=True)
    ruamel.allow_duplicate_keys = False
    out = {}
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        entry = {}
        for name, load in (("ruamel", ruamel.load), ("pyyaml", yaml.safe_load)):
            try:
                entry[name] = plain(load(text))
            except Exception as e:  # any parser failure is the finding
                entry[name] = {"error": f"{type(e).__name__}: {e}"}
        out[path] = entry
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
