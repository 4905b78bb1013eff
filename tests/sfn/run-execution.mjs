// Runs one execution of an ASL (JSONPath) definition in aws-local-stepfunctions, with every
// Lambda Task invoking the real function served by `cargo lambda watch`.
//
//   node tests/sfn/run-execution.mjs --definition FILE --input JSON --lambda-endpoint URL \
//        [--sub NAME=VALUE]... [--wait-scale N] [--name EXECUTION_NAME]
//        [--abort-at STATE[:N]] [--timeout-seconds S] [--trace-file FILE]
//
// Prints one JSON line: {"status","output","error","cause","path":[states entered, in order],
// "timeline":[[state, ms since start], …], "startedAtMs": epoch ms of the start,
// "invocations":[[function, ms], …] (each Lambda invocation the interpreter made)}.
// A function's HTTP 500 {"errorType","errorMessage"} becomes the Step Functions error named
// errorType, as Lambda + Step Functions do it. --wait-scale N runs every `Seconds` Wait N times
// faster (match the simulator's --speed), and so is every Retry interval (without backoff). Exit code 0 when the execution ran (whatever its
// result), 2 when it could not run.
// --abort-at STATE:N stops the execution (StopExecution) when it enters STATE for the Nth time
// (default 1): status ABORTED. --timeout-seconds S replaces the definition's top-level
// TimeoutSeconds (real seconds, not scaled): status TIMED_OUT when it passes.
// --trace-file FILE gets a line with each state's name as the execution enters it, as it
// happens (a test waits there for a point of the execution to act on the world).
//
// A `arn:aws:states:::lambda:invoke.waitForTaskToken` Task (which the interpreter cannot run
// itself) is run here as Step Functions runs it: a task token is opened on slipway-sim
// (--sim-endpoint, default $SLIPWAY_SIM_ENDPOINT), the function is invoked with the
// Parameters' Payload and `$$.Task.Token` set to that token, and the task then waits until
// the token is answered through the simulator's SendTaskSuccess / SendTaskFailure (its output,
// or its error and cause), or fails with States.Timeout after TimeoutSeconds, or
// States.HeartbeatTimeout when no SendTaskHeartbeat came within HeartbeatSeconds (both
// scaled like the Waits, and the token closed: a late answer is TaskTimedOut). A function
// error fails the task with the function's errorType, as the Lambda integration does.

// aws-local-stepfunctions 3 wants Node 22; on Node 20 it runs with this one polyfill.
Promise.withResolvers ??= () => {
  let resolve, reject;
  const promise = new Promise((a, b) => { resolve = a; reject = b; });
  return { promise, resolve, reject };
};

import { appendFileSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    definition: { type: 'string' },
    input: { type: 'string', default: '{}' },
    'lambda-endpoint': { type: 'string' },
    sub: { type: 'string', multiple: true, default: [] },
    'wait-scale': { type: 'string', default: '1' },
    name: { type: 'string' },
    'abort-at': { type: 'string' },
    'timeout-seconds': { type: 'string' },
    'trace-file': { type: 'string' },
    'sim-endpoint': { type: 'string', default: process.env.SLIPWAY_SIM_ENDPOINT },
  },
});

function die(message) {
  process.stderr.write(`run-execution: ${message}\n`);
  process.exit(2);
}

if (!args.definition || !args['lambda-endpoint']) die('--definition and --lambda-endpoint are required');
const { StateMachine } = await import('aws-local-stepfunctions');

// DefinitionSubstitutions, as Step Functions applies them: ${Name} replaced in the text.
let text = readFileSync(args.definition, 'utf8');
for (const pair of args.sub) {
  const eq = pair.indexOf('=');
  if (eq < 1) die(`--sub ${pair}: expected NAME=VALUE`);
  text = text.split('${' + pair.slice(0, eq) + '}').join(pair.slice(eq + 1));
}
const leftover = text.match(/\$\{[A-Za-z0-9_]+\}/);
if (leftover) die(`definition still has the substitution ${leftover[0]}: pass --sub`);
const definition = JSON.parse(text);
if (args['timeout-seconds'] !== undefined) {
  const t = Number(args['timeout-seconds']);
  if (!(t > 0)) die(`--timeout-seconds ${args['timeout-seconds']}: must be a positive number`);
  definition.TimeoutSeconds = t;
}
let abortAt = null;
if (args['abort-at'] !== undefined) {
  const [state, nth = '1'] = args['abort-at'].split(':');
  abortAt = { state, nth: Number(nth) };
  if (!state || !(abortAt.nth >= 1)) die(`--abort-at ${args['abort-at']}: expected STATE or STATE:N`);
}
const scale = Number(args['wait-scale']);
if (!(scale > 0)) die(`--wait-scale ${args['wait-scale']}: must be a positive number`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const handlers = {};
const waits = {};
const retries = {};
// $$.Task.Token as the interpreter resolves it (one context per execution); each task
// replaces it with a token of its own.
const TOKEN_PLACEHOLDER = 'slipway-local-task-token-placeholder';
const WAIT_FOR_TOKEN = 'arn:aws:states:::lambda:invoke.waitForTaskToken';
let aborted = false;
function collect(states) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task' && typeof state.Resource === 'string' && state.Resource.includes(':function:')) {
      const fn = state.Resource.split(':function:')[1].split(':')[0];
      handlers[name] = (input) => invoke(fn, input);
    }
    if (state.Type === 'Task' && state.Resource === WAIT_FOR_TOKEN) {
      if (!args['sim-endpoint']) die(`state ${name} waits for a task token: pass --sim-endpoint (or set SLIPWAY_SIM_ENDPOINT)`);
      handlers[name] = (input) => waitForTaskToken(state, input);
    }
    if (state.Type === 'Wait' && typeof state.Seconds === 'number') waits[name] = (state.Seconds * 1000) / scale;
    // A SecondsPath wait's length is only known at run time (the interpreter's overrides are
    // fixed numbers): it runs as a local Task that reads the seconds from its input and
    // sleeps them scaled, passing its input on (see below).
    if (state.Type === 'Wait' && state.SecondsPath) {
      const path = state.SecondsPath;
      states[name] = {
        Type: 'Task',
        Comment: `test bed: Wait SecondsPath ${path}, scaled`,
        Resource: 'arn:aws:lambda:us-east-1:123456789012:function:slipway-local-wait',
        // A Wait has no timeout; the interpreter gives a Task 60 s unless told, and its
        // timer is a setTimeout (at most 2^31 − 1 ms): about 23 days.
        TimeoutSeconds: 2000000,
        ...(state.InputPath !== undefined && { InputPath: state.InputPath }),
        ...(state.OutputPath !== undefined && { OutputPath: state.OutputPath }),
        ...(state.Next !== undefined ? { Next: state.Next } : { End: true }),
      };
      handlers[name] = async (input) => {
        const seconds = path.replace(/^\$\.?/, '').split('.').filter(Boolean).reduce((v, k) => v?.[k], input);
        if (!Number.isInteger(seconds) || seconds < 0) {
          throw new TaskError('States.Runtime', `${name}: ${path} is ${JSON.stringify(seconds)}, not a number of seconds`);
        }
        await sleep((seconds * 1000) / scale);
        return input;
      };
    }
    if (Array.isArray(state.Retry)) retries[name] = state.Retry.map((r) => ((r.IntervalSeconds ?? 1) * 1000) / scale);
    const inner = state.ItemProcessor ?? state.Iterator;
    if (inner) collect(inner.States);
    for (const branch of state.Branches ?? []) collect(branch.States);
  }
}
collect(definition.States);

class TaskError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

const invocations = [];

async function invoke(fn, input) {
  const url = `${args['lambda-endpoint']}/2015-03-31/functions/${fn}/invocations`;
  let response;
  const began = Date.now();
  try {
    response = await fetch(url, { method: 'POST', body: JSON.stringify(input) });
  } catch (e) {
    throw new TaskError('Lambda.ServiceException', `cannot reach ${url}: ${e.message}`);
  }
  const body = await response.text();
  invocations.push([fn, Date.now() - began]);
  if (response.ok) return body === '' ? null : JSON.parse(body);
  let parsed = null;
  try { parsed = JSON.parse(body); } catch { /* not JSON: reported below */ }
  if (parsed && typeof parsed.errorType === 'string') throw new TaskError(parsed.errorType, parsed.errorMessage ?? '');
  throw new TaskError('Lambda.ServiceException', `HTTP ${response.status} from ${fn}: ${body.slice(0, 500)}`);
}

async function sim(method, path) {
  const url = `${args['sim-endpoint']}${path}`;
  const response = await fetch(url, { method });
  if (!response.ok) throw new TaskError('States.Runtime', `${method} ${url}: HTTP ${response.status}`);
  return response.status === 204 ? null : response.json();
}

async function waitForTaskToken(state, input) {
  const arn = input?.FunctionName;
  if (typeof arn !== 'string' || !arn.includes(':function:')) {
    throw new TaskError('States.Runtime', `${WAIT_FOR_TOKEN}: Parameters.FunctionName ${JSON.stringify(arn)} is not a function ARN`);
  }
  const fn = arn.split(':function:')[1].split(':')[0];
  const { taskToken } = await sim('POST', '/_sim/task-tokens');
  const payload = JSON.parse(JSON.stringify(input.Payload ?? {}).split(TOKEN_PLACEHOLDER).join(taskToken));
  const path = `/_sim/task-tokens/${encodeURIComponent(taskToken)}`;
  // The task's clocks start with the task, not when the function returns.
  const started = Date.now();
  try {
    await invoke(fn, payload);
  } catch (e) {
    // The first answer closes a task: one the function gave before failing stands.
    await sim('DELETE', path).catch(() => {});
    const t = await sim('GET', path).catch(() => null);
    if (t?.status === 'SUCCEEDED') return t.output;
    if (t?.status === 'FAILED') throw new TaskError(t.error, t.cause);
    throw e;
  }
  const timeoutMs = state.TimeoutSeconds !== undefined ? (state.TimeoutSeconds * 1000) / scale : Infinity;
  const heartbeatMs = state.HeartbeatSeconds !== undefined ? (state.HeartbeatSeconds * 1000) / scale : Infinity;
  for (;;) {
    const t = await sim('GET', path);
    if (t.status === 'SUCCEEDED') return t.output;
    if (t.status === 'FAILED') throw new TaskError(t.error, t.cause);
    const now = Date.now();
    const timedOut = now - started >= timeoutMs ? 'States.Timeout'
      : now - Math.max(started, t.heartbeatAtMs) >= heartbeatMs ? 'States.HeartbeatTimeout' : null;
    if (timedOut || aborted || t.status === 'CLOSED') {
      await sim('DELETE', path);
      // An answer may have come between the look and the close.
      const last = await sim('GET', path);
      if (last.status === 'SUCCEEDED') return last.output;
      if (last.status === 'FAILED') throw new TaskError(last.error, last.cause);
      throw new TaskError(timedOut ?? 'States.Runtime', timedOut ? '' : 'the execution stopped');
    }
    await sleep(10);
  }
}

let input;
try { input = JSON.parse(args.input); } catch (e) { die(`--input is not JSON: ${e.message}`); }

// The Context Object as Step Functions fills it ($$.Execution.Id is the lock owner).
const name = args.name ?? `local-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const context = {
  Execution: {
    Id: `arn:aws:states:us-east-1:123456789012:execution:slipway:${name}`,
    Name: name,
    Input: input,
    StartTime: new Date().toISOString(),
    RoleArn: 'arn:aws:iam::123456789012:role/slipway-state-machine',
  },
  StateMachine: { Id: 'arn:aws:states:us-east-1:123456789012:stateMachine:slipway', Name: 'slipway' },
  Task: { Token: TOKEN_PLACEHOLDER },
};
const t0 = Date.now();
const machine = new StateMachine(definition, { validationOptions: { checkArn: true, checkPaths: true } });
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries },
  context,
});
const path = [];
const timeline = [];

let failure = null;
const logs = (async () => {
  for await (const event of execution.eventLogs) {
    if (event.type === 'StateEntered') {
      path.push(event.state.name);
      if (args['trace-file']) appendFileSync(args['trace-file'], `${event.state.name}\n`);
      timeline.push([event.state.name, Math.max(0, event.timestamp - t0)]);
      if (abortAt && event.state.name === abortAt.state && --abortAt.nth === 0) {
        aborted = true;
        execution.abort();
      }
    }
    if (event.type === 'ExecutionFailed') failure = { error: event.Error, cause: event.Cause };
  }
})();

let result;
try {
  const output = await execution.result;
  result = { status: 'SUCCEEDED', output, path };
} catch (e) {
  await logs;
  const cause = e.cause ?? e;
  if (e.name === 'ExecutionAbortedError' || e.name === 'ExecutionTimeoutError') {
    result = { status: e.name === 'ExecutionAbortedError' ? 'ABORTED' : 'TIMED_OUT', path };
  } else result = {
    status: 'FAILED',
    error: failure?.error ?? cause.name,
    cause: typeof failure?.cause === 'string' ? failure.cause : cause.message,
    path,
  };
}
await logs;
result.timeline = timeline;
result.startedAtMs = t0;
result.invocations = invocations;
// A task still waiting for its token (the execution timed out around it) stops here.
aborted = true;
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
