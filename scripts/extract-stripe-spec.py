#!/usr/bin/env python3
"""Copy, verbatim, the operations Tsunagu calls out of Stripe's official OpenAPI file (spec3.json,
API version 2020-08-27) into crates/tsunagu-stripe/tests/spec/stripe-operations.json, with every
component schema they reach (and the event payloads' objects), so the contract tests run in any
clone (the full 4 MiB file lives outside the repository, in ../shared/specs/stripe/).

usage: scripts/extract-stripe-spec.py [SPEC_DIR]   (default: ../shared/specs/stripe)
"""
import hashlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared", "specs", "stripe")
OPS = [
    "GetAccount",
    "PostCheckoutSessions", "GetCheckoutSessionsSession", "PostCheckoutSessionsSessionExpire",
    "GetPaymentIntentsIntent", "GetChargesCharge",
    "PostRefunds", "GetRefundsRefund", "PostRefundsRefundCancel",
    "GetWebhookEndpoints", "PostWebhookEndpoints", "DeleteWebhookEndpointsWebhookEndpoint",
    "GetEvents", "GetEventsId",
]
# Objects that arrive inside events (`data.object`), checked by name.
EXTRA = ["checkout.session", "charge", "refund", "payment_intent", "error", "event"]


def refs(value):
    return set(re.findall(r'#/components/schemas/([^"]+)', json.dumps(value)))


def main():
    raw = open(os.path.join(SPEC_DIR, "spec3.json"), "rb").read()
    spec = json.loads(raw)
    out = {"note": "Verbatim subset of Stripe's spec3.json; regenerate with scripts/extract-stripe-spec.py.",
           "source": {"file": "spec3.json", "sha256": hashlib.sha256(raw).hexdigest(),
                      "version": spec["info"]["version"]},
           "servers": spec["servers"], "paths": {}, "components": {"schemas": {}}}
    todo = set(EXTRA)
    found = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") in OPS:
                out["paths"].setdefault(path, {})[method] = op
                found.add(op["operationId"])
                todo |= refs(op)
    missing = set(OPS) - found
    if missing:
        sys.exit(f"operations not found: {sorted(missing)}")
    schemas = spec["components"]["schemas"]
    while todo:
        name = todo.pop()
        if name in out["components"]["schemas"]:
            continue
        out["components"]["schemas"][name] = schemas[name]
        todo |= refs(schemas[name])
    target = os.path.join(ROOT, "crates", "tsunagu-stripe", "tests", "spec", "stripe-operations.json")
    with open(target, "w") as f:
        json.dump(out, f, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(found)} operations and {len(out['components']['schemas'])} schemas to {target}")


if __name__ == "__main__":
    main()
