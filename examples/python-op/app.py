"""`release-notes`: a sluice op in Python.

Turns a list of changes into release notes, grouped by kind (`feat:`, `fix:`, anything else),
attaches them to the job as an annotation and returns them as output for later steps (a
`notify` step, say). Built with componentize-py; see README.md.
"""

import json

from wit_world import WitWorld
from wit_world.imports import host, types

INPUT_SCHEMA = {
    "type": "object",
    "required": ["version", "changes"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string", "description": "the version being released"},
        "previous": {"type": "string", "description": "the version it replaces"},
        "changes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "one line per change, e.g. `fix: login loops`",
        },
    },
}

KINDS = [("feat", "Features"), ("fix", "Fixes")]


def notes(version, previous, changes):
    groups = {title: [] for _, title in KINDS}
    groups["Other"] = []
    for change in changes:
        kind, sep, text = change.partition(":")
        title = dict(KINDS).get(kind.strip().lower()) if sep else None
        groups[title or "Other"].append((text if title else change).strip())
    head = f"# {version}" + (f" (after {previous})" if previous else "")
    lines = [head]
    for title, items in groups.items():
        if items:
            lines.append(f"\n## {title}\n")
            lines.extend(f"- {item}" for item in items)
    return "\n".join(lines) + "\n", {t: len(i) for t, i in groups.items() if i}


def failure(message):
    return types.Outcome_Failure(types.Failure(message=message, retryable=False, details=""))


class WitWorld(WitWorld):
    def describe(self) -> types.OpInfo:
        return types.OpInfo(
            name="release-notes",
            version="0.1.0",
            description="Writes release notes from a list of changes (a Python op)",
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema="",
            idempotent=True,
            can_rollback=False,
            needs=[],
        )

    def run(self, ctx: types.JobContext, input: str) -> types.Outcome:
        try:
            args = json.loads(input)
        except ValueError as e:
            return failure(f"the input is not JSON: {e}")
        if not isinstance(args, dict) or not isinstance(args.get("version"), str):
            return failure("`version` is required: the version being released, e.g. 1.4.2")
        changes = args.get("changes")
        if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
            return failure("`changes` must be a list of lines such as `fix: login loops`")
        if not changes:
            return failure("`changes` is empty: nothing to write notes about")
        text, counts = notes(args["version"], args.get("previous"), changes)
        host.log(types.LogLevel.INFO, f"{len(changes)} changes: {counts}")
        host.annotate(f"release notes {args['version']}", text)
        output = {"notes": text, "counts": counts}
        return types.Outcome_Success(json.dumps(output))

    def resume(self, ctx, input, state, decision) -> types.Outcome:
        return failure("release-notes opens no gates, so it cannot resume")

    def rollback(self, ctx, input, output) -> types.Outcome:
        return failure("release-notes cannot roll back")
