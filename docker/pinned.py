"""Print the version pyproject.toml pins for a package (dependencies or extras), so the
Dockerfiles never carry a second, drifting list of versions."""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
specs = list(project["dependencies"]) + [d for deps in project["optional-dependencies"].values() for d in deps]
for spec in specs:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", spec.strip())
    if m and m.group(1).lower() == sys.argv[1].lower():
        print(m.group(2))
        sys.exit(0)
sys.exit(f"{sys.argv[1]} is not pinned in pyproject.toml")
