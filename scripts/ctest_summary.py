#!/usr/bin/env python3
"""Counts a ctest run from its JUnit file (ctest --output-junit FILE).

    ctest_summary.py JUNIT_XML

Prints, for scripts/test.sh:
  skipped NAME: REASON          one line per skipped test
  missing-dependency NAME       one line per test skipped for a missing
                                dependency (its output says "missing dependency:")
  counts PASSED FAILED SKIPPED  last line

A test counts as skipped only when ctest skipped it on purpose (the test's
SKIP_RETURN_CODE or SKIP_REGULAR_EXPRESSION, i.e. GTEST_SKIP): a test ctest
did not run for another reason (e.g. "Unable to find executable") is failed,
a disabled test (DISABLED_ prefix) is skipped,
and so is a skipped test whose output has a sanitizer report (the skip
regular expression would otherwise hide a leak found at exit).
"""
import sys
import xml.etree.ElementTree as ET

MISSING = "missing dependency:"
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def skip_reason(out, fallback):
    lines = out.splitlines()
    for line in lines:
        if MISSING in line:
            return line[line.index(MISSING):].strip()
    # GoogleTest: "FILE:LINE: Skipped" then the message on the next line.
    for i, line in enumerate(lines):
        if line.rstrip().endswith(": Skipped") and i + 1 < len(lines) and lines[i + 1].strip():
            return lines[i + 1].strip()
    return fallback


def main():
    root = ET.parse(sys.argv[1]).getroot()
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        name = case.get("name")
        status = case.get("status")
        out = case.findtext("system-out") or ""
        skip = case.find("skipped")
        if status == "run":
            passed += 1
        elif status == "notrun" and skip is not None and skip.get("message", "").startswith("SKIP_"):
            if any(r in out for r in SANITIZER_REPORTS):
                failed += 1
                print(f"failed {name}: skipped, but its output has a sanitizer report")
                continue
            skipped += 1
            print(f"skipped {name}: {skip_reason(out, skip.get('message'))}")
            if MISSING in out:
                print(f"missing-dependency {name}")
        elif status == "disabled":  # DISABLED_ in the source, or the DISABLED property
            skipped += 1
            print(f"skipped {name}: disabled")
        else:
            failed += 1
    print(f"counts {passed} {failed} {skipped}")


if __name__ == "__main__":
    main()
