// `bump`: a sluice op in JavaScript.
//
// Picks the next semantic version from the current one and the changes since (conventional
// commits: `feat!:` or `BREAKING CHANGE` is major, `feat:` minor, anything else patch) and
// returns it for later steps. Built with jco (QuickJS backend); see README.md.
import { log } from 'sluice:op/host@0.1.0';

const INPUT_SCHEMA = {
  type: 'object',
  required: ['current', 'changes'],
  additionalProperties: false,
  properties: {
    current: { type: 'string', description: 'the version released now, e.g. 1.4.2' },
    changes: { type: 'array', items: { type: 'string' }, description: 'one line per change' },
  },
};

function failure(message) {
  return { tag: 'failure', val: { message, retryable: false, details: '' } };
}

function level(changes) {
  if (changes.some((c) => /^[a-z]+(\(.*\))?!:/.test(c) || c.includes('BREAKING CHANGE'))) {
    return 'major';
  }
  return changes.some((c) => /^feat(\(.*\))?:/.test(c)) ? 'minor' : 'patch';
}

export function describe() {
  return {
    name: 'bump',
    version: '0.1.0',
    description: 'Picks the next semantic version from the changes since the current one (a JavaScript op)',
    inputSchema: JSON.stringify(INPUT_SCHEMA),
    outputSchema: '',
    idempotent: true,
    canRollback: false,
    needs: [],
  };
}

export function run(ctx, input) {
  let args;
  try {
    args = JSON.parse(input);
  } catch (e) {
    return failure(`the input is not JSON: ${e.message}`);
  }
  const m = /^v?(\d+)\.(\d+)\.(\d+)$/.exec(args.current ?? '');
  if (!m) {
    return failure(`\`current\` is ${JSON.stringify(args.current)}: give a version such as 1.4.2`);
  }
  if (!Array.isArray(args.changes) || args.changes.length === 0) {
    return failure('`changes` must be a non-empty list of lines such as `feat: dark mode`');
  }
  let [major, minor, patch] = m.slice(1).map(Number);
  const how = level(args.changes);
  if (how === 'major') [major, minor, patch] = [major + 1, 0, 0];
  else if (how === 'minor') [minor, patch] = [minor + 1, 0];
  else patch += 1;
  const version = `${major}.${minor}.${patch}`;
  log('info', `${args.current} -> ${version} (${how}, ${args.changes.length} changes)`);
  return { tag: 'success', val: JSON.stringify({ version, previous: args.current, level: how }) };
}

export function resume() {
  return failure('bump opens no gates, so it cannot resume');
}

export function rollback() {
  return failure('bump cannot roll back');
}
