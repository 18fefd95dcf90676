"""Print the version constraints.txt (the exact set verified together) pins for a package, so the
Dockerfiles never carry a second, drifting list of versions. pyproject.toml states ranges."""

import re
import sys
from pathlib import Path

constraints = (Path(__file__).resolve().parent.parent / "constraints.txt").read_text().splitlines()
wanted = sys.argv[1].lower().replace("_", "-")
for line in constraints:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s#]+)", line.strip())
    if m and m.group(1).lower().replace("_", "-") == wanted:
        print(m.group(2))
        sys.exit(0)
sys.exit(f"{sys.argv[1]} is not pinned in constraints.txt")
