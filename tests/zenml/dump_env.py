"""A fake Rust step: writes the ZENML_OTEL_* variables it got as JSON.

Usage: dump_env.py OUT_PATH [EXIT_CODE]  (exit code default 0)
"""

import json
import os
import sys

if __name__ == "__main__":
    received = {k: v for k, v in os.environ.items() if k.startswith("ZENML_OTEL_")}
    with open(sys.argv[1], "w") as out:
        json.dump(received, out, indent=1, sort_keys=True)
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
