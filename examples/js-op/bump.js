// `bump`: a sluice op in JavaScript, on the sluice-op SDK (plugins/sdk-js, copied beside it by the build).
//
// Picks the next semantic version from the current one and the changes since (conventional
// commits: `feat!:` or `BREAKING CHANGE` is major, `feat:` minor, anything else patch) and
// returns it for later steps. Built with jco (QuickJS backend); see README.md.
import { defineOp, failure, log, success, t } from './sluice-op.js';

function level(changes) {
  if (changes.some((c) => /^[a-z]+(\(.*\))?!:/.test(c) || c.includes('BREAKING CHANGE'))) return 'major';
  return changes.some((c) => /^feat(\(.*\))?:/.test(c)) ? 'minor' : 'patch';
}

export const { describe, run, resume, rollback } = defineOp({
  name: 'bump',
  description: 'Picks the next semantic version from the changes since the current one (a JavaScript op)',
  idempotent: true,
  input: t.object({
    current: t.string('the version released now, e.g. 1.4.2'),
    changes: t.array(t.string(), 'one line per change'),
  }),
  run(ctx, { current, changes }) {
    const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(current);
    if (!m) return failure(`\`current\` is ${JSON.stringify(current)}: give a version such as 1.4.2`);
    if (changes.length === 0) return failure('`changes` must be a non-empty list of lines such as `feat: dark mode`');
    let [major, minor, patch] = m.slice(1).map(Number);
    const how = level(changes);
    if (how === 'major') [major, minor, patch] = [major + 1, 0, 0];
    else if (how === 'minor') [minor, patch] = [minor + 1, 0];
    else patch += 1;
    const version = `${major}.${minor}.${patch}`;
    log.info(`${current} -> ${version} (${how}, ${changes.length} changes)`);
    return success({ version, previous: current, level: how });
  },
});
