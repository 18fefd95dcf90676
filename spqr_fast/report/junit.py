"""JUnit XML for CI systems: one test case per (subject, check), a failure where it failed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from ..safe_text import printable


@dataclass(frozen=True)
class JUnitCase:
    classname: str
    name: str
    failure: str | None = None  # the message; None: passed
    skipped: str | None = None


def write_junit(path: Path, suite: str, cases: list[JUnitCase]) -> None:
    """Written whole to a temporary file, then renamed: a reader never sees half a report."""
    root = ET.Element("testsuites")
    node = ET.SubElement(root, "testsuite", name=printable(suite), tests=str(len(cases)),
                         failures=str(sum(c.failure is not None for c in cases)),
                         skipped=str(sum(c.skipped is not None for c in cases)))
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=printable(case.classname), name=printable(case.name))
        if case.failure is not None:
            ET.SubElement(element, "failure", message=printable(case.failure)).text = printable(case.failure)
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=printable(case.skipped))
    tmp = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
