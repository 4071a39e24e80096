#!/usr/bin/env python3
"""Convert, verbatim, LINE's official OpenAPI files (YAML) into one JSON file,
crates/tsunagu-line/tests/spec/line-openapi.json, so the contract tests run in any clone
(the originals live outside the repository, in ../shared/specs/line/).

usage: scripts/extract-line-spec.py [SPEC_DIR]   (default: ../shared/specs/line)
needs PyYAML (the test tools' virtualenv has it: target/test-tools/venv/bin/python)
"""
import hashlib
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "specs", "line")
FILES = ["messaging-api.yml", "channel-access-token.yml", "webhook.yml"]


class Loader(yaml.SafeLoader):
    """YAML as JSON sees it: timestamps stay strings (JSON has no dates)."""


Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def jsonable(x):
    # Keys such as unquoted response codes (200:) become the strings JSON requires.
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    return x


def main():
    out = {"note": "LINE's official OpenAPI files, converted from YAML unchanged; regenerate with scripts/extract-line-spec.py.",
           "sources": {}, "documents": {}}
    for name in FILES:
        raw = open(os.path.join(SPEC_DIR, name), "rb").read()
        out["sources"][name] = hashlib.sha256(raw).hexdigest()
        out["documents"][name] = jsonable(yaml.load(raw, Loader=Loader))
    target = os.path.join(ROOT, "crates", "tsunagu-line", "tests", "spec", "line-openapi.json")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(FILES)} documents to {target}")


if __name__ == "__main__":
    main()
