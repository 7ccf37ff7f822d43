// sluice-op: write sluice ops in JavaScript (jco, QuickJS backend). Types: sluice-op.d.ts.
//
//   import { defineOp, t, success, failure, log } from './sluice-op.js';
//   export const { describe, run, resume, rollback } = defineOp({
//     name: 'greet', description: 'Greets someone by name', idempotent: true,
//     input: t.object({ name: t.string('who to greet') }),
//     run(ctx, input) {
//       log.info(`greeting ${input.name} for ${ctx.startedBy}`);
//       return success({ greeting: `hello, ${input.name}` });
//     },
//   });
//
// The input schema is the JSON Schema `describe` returns, and every input is checked against
// it before `run` sees it: an unknown, missing or mistyped field is a failure naming it.
import { log as hostLog, annotate as hostAnnotate, progress as hostProgress, secret as hostSecret } from 'sluice:op/host@0.1.0';
import { run as hostExec } from 'sluice:op/exec@0.1.0';

// ---- Outcomes -------------------------------------------------------------------------------

export const success = (output = null) => ({ tag: 'success', val: JSON.stringify(output) });
export function warning(output = null, message = '') {
  if (message) log.warn(message);
  return { tag: 'warning', val: JSON.stringify(output) };
}
export const failure = (message, { retryable = false, details } = {}) => ({
  tag: 'failure',
  val: { message, retryable, details: details === undefined ? '' : JSON.stringify(details) },
});
export const suspend = (gate) => ({ tag: 'suspend', val: gate });

/** Thrown from an op: ends the call as a failure with this message. */
export class Fail extends Error {
  constructor(message, { retryable = false, details } = {}) {
    super(message);
    this.retryable = retryable;
    this.details = details;
  }
}

/** The host refused or failed a call; `kind` is not-granted, invalid, failed or not-supported. */
export class HostError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

// jco throws a result's error as an exception whose `payload` is the WIT variant.
function hostCall(f) {
  try {
    return f();
  } catch (e) {
    const v = e && e.payload !== undefined ? e.payload : e;
    if (v && typeof v.tag === 'string') throw new HostError(v.tag, String(v.val));
    throw e;
  }
}

// ---- Gates ----------------------------------------------------------------------------------

/** Seconds in `30s`, `5m`, `1h30m`, `2d` or a number of seconds. */
export function seconds(d) {
  if (typeof d === 'number') return d;
  const re = /(\d+)(ms|s|m|h|d)/gy;
  let total = 0;
  let m;
  let end = 0;
  while ((m = re.exec(d))) {
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
    end = re.lastIndex;
  }
  if (!d || end !== d.length) throw new Fail(`\`${d}\` is not a duration: write 30s, 5m or 1h30m`);
  return total;
}

function gate(kind, message, o = {}) {
  return {
    kind,
    message,
    approvers: o.approvers ?? [],
    quorum: o.quorum ?? 1,
    allowSelfApproval: o.allowSelfApproval ?? false,
    inputs: o.inputs ?? [],
    timeoutSeconds: o.timeout === undefined ? undefined : Math.ceil(seconds(o.timeout)),
    timeoutAction: o.onTimeout,
    // Anything JSON; handed back to `resume` as it was.
    state: utf8(JSON.stringify(o.state ?? null)),
  };
}
export const approval = (message, o) => gate('approval', message, o);
export const pause = (message, o) => gate('pause', message, o);
export const text = (name, description = '', { required = false, default: d } = {}) =>
  ({ name, description, kind: { tag: 'text' }, required, default: d });
export const choice = (name, options, description = '', { required = false, default: d } = {}) =>
  ({ name, description, kind: { tag: 'choice', val: options }, required, default: d });

// ---- Host -----------------------------------------------------------------------------------

export const log = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error'].map((l) => [l, (message) => hostLog(l, String(message))]),
);
export const progress = (message, percent) => hostProgress(percent, message);
export const annotate = (title, body) => hostCall(() => hostAnnotate(title, body));
export const secret = (name) => hostCall(() => hostSecret(name));

/** Runs a granted program; `check()` throws a Fail unless it exited 0. */
export function exec(program, args = [], { env = {}, stdin = '', timeoutMs } = {}) {
  const s = hostCall(() => hostExec({
    program,
    args,
    env: Object.entries(env),
    stdin: utf8(stdin),
    timeoutMs,
  }));
  const done = {
    code: s.code,
    stdout: fromUtf8(s.stdout),
    stderr: fromUtf8(s.stderr),
    timedOut: s.timedOut,
    truncated: s.truncated,
    ok: s.code === 0,
    check() {
      if (!done.ok) {
        const why = done.timedOut ? 'timed out' : `exited ${done.code ?? 'on a signal'}`;
        throw new Fail(`${program} ${why}: ${done.stderr.trim().split('\n').pop() ?? ''}`);
      }
      return done;
    },
  };
  return done;
}

/** Not supported yet: jco's QuickJS backend has no wasi:http client. */
export const http = new Proxy({}, {
  get: () => () => {
    throw new HostError('not-supported', 'HTTP is not supported yet in JavaScript ops: write this op in Rust (sluice_op::http), or run a granted program through exec');
  },
});

function utf8(s) {
  const out = [];
  for (const ch of String(s)) {
    let c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

function fromUtf8(b) {
  let s = '';
  for (let i = 0; i < b.length;) {
    const c = b[i];
    const n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    let cp = n === 1 ? c : c & (0xff >> (n + 1));
    for (let k = 1; k < n; k++) cp = (cp << 6) | (b[i + k] & 63);
    s += String.fromCodePoint(cp);
    i += n;
  }
  return s;
}

// ---- Typed input ----------------------------------------------------------------------------

const kindOf = (v) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `a ${typeof v}`);
const at = (path) => (path ? `\`${path}\`` : 'the input');
function scalar(type, test, description) {
  const schema = { type, ...(description ? { description } : {}) };
  return { schema, check: (v, path) => (test(v) ? null : `${at(path)} must be ${type === 'integer' ? 'an integer' : `a ${type}`}, not ${kindOf(v)} (${JSON.stringify(v)})`) };
}

export const t = {
  string: (d) => scalar('string', (v) => typeof v === 'string', d),
  number: (d) => scalar('number', (v) => typeof v === 'number', d),
  integer: (d) => scalar('integer', (v) => Number.isInteger(v), d),
  boolean: (d) => scalar('boolean', (v) => typeof v === 'boolean', d),
  oneOf: (values, description) => ({
    schema: { enum: values, ...(description ? { description } : {}) },
    check: (v, path) => (values.includes(v) ? null : `${at(path)} is ${JSON.stringify(v)}: choose one of ${values.map((x) => JSON.stringify(x)).join(', ')}`),
  }),
  optional: (inner) => ({ ...inner, optional: true }),
  array: (item, description) => ({
    schema: { type: 'array', items: item.schema, ...(description ? { description } : {}) },
    check(v, path) {
      if (!Array.isArray(v)) return `${at(path)} must be a list, not ${kindOf(v)} (${JSON.stringify(v)})`;
      for (let i = 0; i < v.length; i++) {
        const bad = item.check(v[i], `${path}[${i}]`);
        if (bad) return bad;
      }
      return null;
    },
  }),
  object: (props, description) => ({
    schema: {
      type: 'object',
      properties: Object.fromEntries(Object.entries(props).map(([k, p]) => [k, p.schema])),
      required: Object.entries(props).filter(([, p]) => !p.optional).map(([k]) => k),
      additionalProperties: false,
      ...(description ? { description } : {}),
    },
    check(v, path) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return `${at(path)} must be a mapping, not ${kindOf(v)}`;
      for (const k of Object.keys(v)) {
        if (!(k in props)) return `\`${path ? `${path}.` : ''}${k}\` is not an input${path ? ` of \`${path}\`` : ''}; it takes: ${Object.keys(props).join(', ')}`;
      }
      for (const [k, p] of Object.entries(props)) {
        const sub = path ? `${path}.${k}` : k;
        if (v[k] === undefined || v[k] === null) {
          if (!p.optional) return `\`${sub}\` is required${p.schema.description ? `: ${p.schema.description}` : ''}`;
          continue;
        }
        const bad = p.check(v[k], sub);
        if (bad) return bad;
      }
      return null;
    },
  }),
};

// ---- The op ---------------------------------------------------------------------------------

function capability(s) {
  const [kind, ...rest] = s.split(':');
  const val = rest.join(':');
  return kind === 'workspace' ? { tag: 'workspace', val } : { tag: kind, val };
}

function guarded(name, body) {
  try {
    return body();
  } catch (e) {
    if (e instanceof Fail) return failure(e.message, { retryable: e.retryable, details: e.details });
    if (e instanceof HostError) return failure(e.message);
    log.error(e && e.stack ? `${e}\n${e.stack}` : String(e));
    return failure(`op \`${name}\` threw: ${e}`);
  }
}

/** The op's exports (`describe`, `run`, `resume`, `rollback`) from its definition. */
export function defineOp(o) {
  const read = (input) => {
    let v;
    try {
      v = JSON.parse(input);
    } catch (e) {
      throw new Fail(`the input is not JSON: ${e.message}`);
    }
    const bad = o.input ? o.input.check(v, '') : null;
    if (bad) throw new Fail(bad);
    return v;
  };
  const decision = (d) => ({
    kind: d.tag,
    user: d.val?.user ?? '',
    comment: d.val?.comment ?? '',
    inputs: Object.fromEntries(d.val?.inputs ?? []),
  });
  return {
    describe: () => ({
      name: o.name,
      version: o.version ?? '0.1.0',
      description: o.description ?? '',
      inputSchema: JSON.stringify(o.input ? o.input.schema : {}),
      outputSchema: o.output ? JSON.stringify(o.output.schema) : '',
      idempotent: o.idempotent ?? false,
      canRollback: typeof o.rollback === 'function',
      needs: (o.needs ?? []).map(capability),
    }),
    run: (ctx, input) => guarded(o.name, () => o.run(ctx, read(input))),
    resume: (ctx, input, state, d) => guarded(o.name, () => {
      if (!o.resume) throw new Fail(`${o.name} opens no gates, so it cannot resume`);
      return o.resume(ctx, read(input), JSON.parse(fromUtf8(state) || 'null'), decision(d));
    }),
    rollback: (ctx, input, output) => guarded(o.name, () => {
      if (!o.rollback) throw new Fail(`${o.name} cannot roll back`);
      return o.rollback(ctx, read(input), output ? JSON.parse(output) : null);
    }),
  };
}
