# Decode CRIU images with crit's Python library (pycriu), one JSON line per file given on argv:
# {"file": PATH, "ok": true, "json": {...}} or {"file": PATH, "ok": false, "error": "..."}.
# Used by criukit's zdtm codec check to compare with crit without one python start per file.
import json
import sys

import pycriu

for p in sys.argv[1:]:
    try:
        with open(p, 'rb') as f:
            img = pycriu.images.load(f, False, False)
        out = {"file": p, "ok": True, "json": img}
    except BaseException as e:  # noqa: B036 (crit fails in many ways on newer images)
        out = {"file": p, "ok": False, "error": "%s: %s" % (type(e).__name__, str(e)[:200])}
    try:
        line = json.dumps(out)
    except BaseException as e:
        line = json.dumps({"file": p, "ok": False, "error": "json: %s" % e})
    sys.stdout.write(line + "\n")
