#!/usr/bin/env python3
"""Each workspace crate's `rust-version` must be at least what its dependencies
declare with every feature on (normal and build dependencies, transitively; a
user never builds our dev-dependencies). Reads `cargo metadata`; no other
toolchain is needed. Prints each crate's figure; exits 1 on a crate that
claims less than its dependencies need."""

import json
import subprocess
import sys


def version(text):
    parts = [int(part) for part in text.split(".")] if text else [0]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for member in meta["workspace_members"]:
        crate = packages[member]
        need, by = (0, 0, 0), None
        seen, stack = set(), [member]
        while stack:
            for dep in nodes[stack.pop()]["deps"]:
                if all(k["kind"] == "dev" for k in dep["dep_kinds"]) or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                declared = packages[dep["pkg"]].get("rust_version")
                if declared and version(declared) > need:
                    need, by = version(declared), packages[dep["pkg"]]["name"]
        claimed = crate.get("rust_version")
        verdict = "ok" if claimed and version(claimed) >= need else "TOO LOW"
        failed |= verdict != "ok"
        shown = ".".join(map(str, need))
        print(f"{crate['name']}: rust-version {claimed}, dependencies need {shown} ({by}): {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
