"""The nightly demonstration (`make nightly-demo`): the embedded default evaluated twice into the
same output folder — "last night" as shipped, "tonight" with one deliberate change (the UCE
model fine-tuned on the world's deliberately unsafe set instead of the benign one) — each run
recorded in the folder's history database, then `spqr-fast compare` of the two run ids, which
names the change in provenance and flags the regression (exit 1).

It runs the three commands a nightly job would, and prints them first."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

UNSAFE_BFT = {"dataset": "datasets/unsafe", "steps": 60, "learning_rate": 1e-3}


def write_nights(out: Path, harmful_limit: int | None) -> tuple[Path, Path]:
    """The world project and two configs: night-1 as shipped, night-2 with the deliberate change."""
    from ..world.project import write_world_project

    config = yaml.safe_load(write_world_project(out / "project").read_text())
    if harmful_limit is not None:
        config["prompts"]["harmful"]["limit"] = harmful_limit
    nights = []
    for night in (1, 2):
        if night == 2:
            uce = next(m for m in config["models"] if m["name"] == "uce")
            uce["bft"] = {**uce["bft"], **UNSAFE_BFT}
        path = out / "project" / f"night-{night}.yaml"
        path.write_text(yaml.safe_dump({**config, "name": "nightly"}, sort_keys=False))
        nights.append(path)
    return nights[0], nights[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    shown = " ".join(shlex.quote(a) for a in ["spqr-fast", *args])
    print(f"$ {shown}", flush=True)
    done = subprocess.run([sys.executable, "-m", "spqr_fast.cli", *args], stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("nightly-demo"))
    parser.add_argument("--harmful-limit", type=int, default=None, help="fewer harmful prompts (a quicker demo)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    night1, night2 = write_nights(out, args.harmful_limit)
    runs = out / "runs"
    history = f"sqlite:///{runs / 'history.sqlite'}"
    ids = []
    for night in (night1, night2):
        done = _run(["eval", str(night), "--out", str(runs), "--history", history])
        if done.returncode != 0:
            return done.returncode
        listed = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "history", "--history", history, "--limit",
                                 "1", "--json"], stdout=subprocess.PIPE, text=True, check=True)
        ids.append(yaml.safe_load(listed.stdout)[0]["id"])
    compared = _run(["compare", ids[0], ids[1], "--history", history, "--html", str(out / "compare.html"),
                     "--junit", str(out / "compare.xml")])
    print(f"compare exit status {compared.returncode} (1: a model regressed); page: {out / 'compare.html'}")
    return 0 if compared.returncode in (0, 1) else compared.returncode


if __name__ == "__main__":
    sys.exit(main())
