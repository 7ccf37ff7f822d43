"""`release-notes`: a sluice op in Python, on the `sluice_op` SDK (plugins/sdk-python).

Turns a list of changes into release notes grouped by kind (`feat:`, `fix:`, anything else),
attaches them to the job and returns them for later steps (a `notify` step, say).
"""

from dataclasses import dataclass
from typing import Annotated

from sluice_op import annotate, export, failure, log, op, success

KINDS = {"feat": "Features", "fix": "Fixes"}


@dataclass
class Input:
    version: Annotated[str, "the version being released"]
    changes: Annotated[list[str], "one line per change, e.g. `fix: login loops`"]
    previous: Annotated[str | None, "the version it replaces"] = None


@op("release-notes", description="Writes release notes from a list of changes (a Python op)",
    idempotent=True)
def release_notes(ctx, input: Input):
    if not input.changes:
        return failure("`changes` is empty: nothing to write notes about")
    groups = {title: [] for title in [*KINDS.values(), "Other"]}
    for change in input.changes:
        kind, sep, text = change.partition(":")
        title = KINDS.get(kind.strip().lower()) if sep else None
        groups[title or "Other"].append((text if title else change).strip())
    lines = [f"# {input.version}" + (f" (after {input.previous})" if input.previous else "")]
    for title, items in groups.items():
        if items:
            lines += [f"\n## {title}\n", *(f"- {item}" for item in items)]
    text = "\n".join(lines) + "\n"
    counts = {title: len(items) for title, items in groups.items() if items}
    log.info(f"{len(input.changes)} changes: {counts}")
    annotate(f"release notes {input.version}", text)
    return success({"notes": text, "counts": counts})


WitWorld = export(release_notes)
