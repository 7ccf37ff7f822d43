// Types of sluice-op.js: the sluice op SDK for JavaScript and TypeScript.

export interface JobContext {
  jobId: string; rule: string; phase: 'check' | 'init' | 'pre' | 'run' | 'post' | 'rollback';
  stepId: string; attempt: number; startedBy: string; previous?: string;
}
export type Outcome =
  | { tag: 'success' | 'warning'; val: string }
  | { tag: 'failure'; val: { message: string; retryable: boolean; details: string } }
  | { tag: 'suspend'; val: Gate };
export interface GateInput { name: string; description: string; kind: { tag: 'text' } | { tag: 'choice'; val: string[] }; required: boolean; default?: string }
export interface Gate {
  kind: 'approval' | 'pause'; message: string; approvers: string[]; quorum: number;
  allowSelfApproval: boolean; inputs: GateInput[]; timeoutSeconds?: number;
  timeoutAction?: DecisionKind; state: Uint8Array;
}
export type DecisionKind = 'approve' | 'reject' | 'resume' | 'retry' | 'skip' | 'abort' | 'rollback';
export interface Decision { kind: DecisionKind | 'timed-out'; user: string; comment: string; inputs: Record<string, string> }

export function success(output?: unknown): Outcome;
export function warning(output?: unknown, message?: string): Outcome;
export function failure(message: string, o?: { retryable?: boolean; details?: unknown }): Outcome;
export function suspend(gate: Gate): Outcome;
export class Fail extends Error { constructor(message: string, o?: { retryable?: boolean; details?: unknown }); retryable: boolean; details?: unknown }
export class HostError extends Error { constructor(kind: string, message: string); kind: 'not-granted' | 'invalid' | 'failed' | 'not-supported' }

export interface GateOptions {
  approvers?: string[]; quorum?: number; allowSelfApproval?: boolean; inputs?: GateInput[];
  /** `30s`, `5m`, `1h30m` or seconds. */ timeout?: string | number; onTimeout?: DecisionKind;
  /** Any JSON, handed back to `resume`. */ state?: unknown;
}
export function approval(message: string, o?: GateOptions): Gate;
export function pause(message: string, o?: GateOptions): Gate;
export function text(name: string, description?: string, o?: { required?: boolean; default?: string }): GateInput;
export function choice(name: string, options: string[], description?: string, o?: { required?: boolean; default?: string }): GateInput;
export function seconds(d: string | number): number;

export const log: Record<'trace' | 'debug' | 'info' | 'warn' | 'error', (message: string) => void>;
export function progress(message: string, percent?: number): void;
export function annotate(title: string, body: string): void;
export function secret(name: string): string;
export interface Completed { code?: number; stdout: string; stderr: string; timedOut: boolean; truncated: boolean; ok: boolean; check(): Completed }
export function exec(program: string, args?: string[], o?: { env?: Record<string, string>; stdin?: string; timeoutMs?: number }): Completed;
/** Not supported yet: every call throws a HostError saying so. */
export const http: Record<string, (...args: unknown[]) => never>;

export interface Schema<T> { schema: object; check(v: unknown, path: string): string | null; optional?: boolean; readonly __type?: T }
export type Infer<S> = S extends Schema<infer T> ? T : never;
type Props = Record<string, Schema<unknown>>;
type ObjectOf<P extends Props> =
  { [K in keyof P as P[K] extends { optional: true } ? never : K]: Infer<P[K]> } &
  { [K in keyof P as P[K] extends { optional: true } ? K : never]?: Infer<P[K]> };
export const t: {
  string(doc?: string): Schema<string>; number(doc?: string): Schema<number>;
  integer(doc?: string): Schema<number>; boolean(doc?: string): Schema<boolean>;
  oneOf<V extends string | number>(values: V[], doc?: string): Schema<V>;
  optional<T>(s: Schema<T>): Schema<T | undefined> & { optional: true };
  array<T>(item: Schema<T>, doc?: string): Schema<T[]>;
  object<P extends Props>(props: P, doc?: string): Schema<ObjectOf<P>>;
};

export interface OpDefinition<I> {
  name: string; version?: string; description?: string; idempotent?: boolean;
  /** Capabilities such as `exec:git`, `secret:token`, `workspace:read-write`. */ needs?: string[];
  input?: Schema<I>; output?: Schema<unknown>;
  run(ctx: JobContext, input: I): Outcome;
  resume?(ctx: JobContext, input: I, state: unknown, decision: Decision): Outcome;
  rollback?(ctx: JobContext, input: I, output: unknown): Outcome;
}
export function defineOp<I>(o: OpDefinition<I>): {
  describe(): object; run(ctx: JobContext, input: string): Outcome;
  resume(ctx: JobContext, input: string, state: Uint8Array, decision: object): Outcome;
  rollback(ctx: JobContext, input: string, output: string): Outcome;
};
