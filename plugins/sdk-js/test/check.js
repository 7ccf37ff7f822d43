// The SDK's surface, exercised by op-test.yaml beside it (tests/it/langs.rs builds and runs it).
import { defineOp, success, suspend, approval, text, exec, secret, annotate, http } from './sluice-op.js';
export const { describe, run, resume, rollback } = defineOp({
  name: 'sdk-check', needs: ['exec:git', 'secret:token'],
  run(ctx, input) {
    if (input.mode === 'gate') return suspend(approval('ship it?', { timeout: '1h30m', inputs: [text('reason')], state: { n: 7 } }));
    if (input.mode === 'http') http.get('https://x');
    if (input.mode === 'nogrant') secret('other');
    const out = exec('git', ['describe']).check();
    annotate('note', 'body');
    return success({ out: out.stdout.trim(), token: secret('token').length });
  },
  resume(ctx, input, state, d) { return success({ n: state.n, by: d.user, kind: d.kind, reason: d.inputs.reason }); },
  rollback(ctx, input, output) { return success(output); },
});
