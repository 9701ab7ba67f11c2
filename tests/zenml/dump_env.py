"""A fake Rust step: writes the ZENML_OTEL_* variables it got as JSON, and under `config_file`
the text of the handed-over configuration file (gone once the call returns).

Usage: dump_env.py OUT_PATH [EXIT_CODE]  (exit code default 0)
"""

import json
import os
import sys

if __name__ == "__main__":
    received = {k: v for k, v in os.environ.items() if k.startswith("ZENML_OTEL_")}
    path = received.get("ZENML_OTEL_LOG_STORE_CONFIG_FILE")
    if path:
        with open(path, encoding="utf-8") as config:
            received["config_file"] = config.read()
    with open(sys.argv[1], "w") as out:
        json.dump(received, out, indent=1, sort_keys=True)
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
