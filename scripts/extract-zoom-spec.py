#!/usr/bin/env python3
"""Copy, verbatim, the operations Tsunagu calls out of Zoom's official OpenAPI files into
crates/tsunagu-zoom/tests/spec/zoom-operations.json, so the contract tests run in any clone
(the full files live outside the repository, in ../shared/specs/zoom/).

usage: scripts/extract-zoom-spec.py [SPEC_DIR]   (default: ../shared/specs/zoom)
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "specs", "zoom")
MEETINGS = "zoom-meetings-api.openapi.json"
USERS = "zoom-meeting-api-2023-10.openapi.json"
OPS = {
    MEETINGS: [
        "meetingCreate", "meeting", "meetingUpdate", "meetingDelete",
        "meetingRegistrantCreate", "meetingRegistrants", "meetingRegistrantStatus",
        "meetingregistrantdelete", "meetingRegistrantsQuestionsGet",
        "webinarCreate", "webinar", "webinarUpdate", "webinarDelete",
        "webinarRegistrantCreate", "webinarRegistrants", "webinarRegistrantStatus",
        "deleteWebinarRegistrant", "webinarRegistrantsQuestionsGet",
    ],
    USERS: ["user"],
}


def main():
    out = {"note": "Verbatim subset of Zoom's official OpenAPI files; regenerate with scripts/extract-zoom-spec.py.",
           "sources": {}, "operations": {}}
    for name, wanted in OPS.items():
        raw = open(os.path.join(SPEC_DIR, name), "rb").read()
        out["sources"][name] = hashlib.sha256(raw).hexdigest()
        spec = json.loads(raw)
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and op.get("operationId") in wanted:
                    out["operations"][op["operationId"]] = {
                        "source": name, "method": method.upper(), "path": path, "operation": op,
                    }
        missing = set(wanted) - set(out["operations"])
        if missing:
            sys.exit(f"operations not found in {name}: {sorted(missing)}")
    target = os.path.join(ROOT, "crates", "tsunagu-zoom", "tests", "spec", "zoom-operations.json")
    with open(target, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(out['operations'])} operations to {target}")


if __name__ == "__main__":
    main()
