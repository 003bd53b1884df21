/**
 * The informer of every ambit component: lists, watches, re-watches from the last resourceVersion,
 * and after any failure lists again with the shared backoff, forever, until stopped. Event handlers
 * that throw are logged, never fatal. Watches have deadlines (see watch.ts), list calls the request
 * timeout of the client that `list` uses.
 */
import { ListWatch, type KubeConfig, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import { Backoff, type BackoffOptions } from '../util/backoff.js';
import type { Logger } from '../util/log.js';
import { errorMessage, isNotFound } from './errors.js';
import { TimedWatch, type WatchTimeouts } from './watch.js';

export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string };
}

export interface InformerOptions<T extends KubernetesObject> {
  config: KubeConfig;
  /** Collection path that is watched, e.g. `/api/v1/pods`. */
  path: string;
  /** The list call of the same collection (with the same selectors), through a client of this kit. */
  list: () => Promise<ListResult<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Names the collection in log lines, e.g. `pods` or `remote secrets`. */
  what: string;
  log: Logger;
  /** Added to every log line of this informer (e.g. `{ kind: 'Pod' }`). */
  logFields?: Record<string, unknown>;
  /** A CRD-backed resource whose absence is expected: failures are logged at info, 404 as "not installed". */
  optional?: boolean;
  backoff?: BackoffOptions;
  watch?: WatchTimeouts;
  onAdd?: (object: T) => void;
  onUpdate?: (object: T) => void;
  onDelete?: (object: T) => void;
  /** After each successful list (the first sync, and every re-list after a failure). */
  onListed?: (result: ListResult<T>) => void;
  /** After each failure, with the delay before the next attempt (health reporting). */
  onError?: (err: unknown, retry: { attempt: number; delayMs: number }) => void;
}

export interface Informer<T extends KubernetesObject> extends ObjectCache<T> {
  /** Resolves once the first list succeeded and its objects were handed to the handlers. */
  readonly synced: Promise<void>;
  start(): void;
  stop(): Promise<void>;
}

export const DEFAULT_INFORMER_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 15_000 };

export function startInformer<T extends KubernetesObject>(options: InformerOptions<T>): Informer<T> {
  const informer = createInformer(options);
  informer.start();
  return informer;
}

/** An informer that runs once `start()` is called. */
export function createInformer<T extends KubernetesObject>(options: InformerOptions<T>): Informer<T> {
  const { what } = options;
  const log = options.logFields ? options.log.child(options.logFields) : options.log;
  const backoff = new Backoff(options.backoff ?? DEFAULT_INFORMER_BACKOFF);
  let stopped = true;
  let timer: NodeJS.Timeout | undefined;
  let lastProblem: string | undefined;
  let markSynced!: () => void;
  const synced = new Promise<void>((resolve) => (markSynced = resolve));

  const list = async () => {
    const result = await options.list();
    if (lastProblem !== undefined) log.info({ resource: what }, `${what} readable again`);
    lastProblem = undefined;
    backoff.reset();
    guard('listed', () => options.onListed?.(result));
    // ListWatch hands the listed objects to the handlers right after this returns.
    setImmediate(markSynced);
    return result;
  };
  const listWatch = new ListWatch<T>(options.path, new TimedWatch(options.config, options.watch), list as never, false, options.labelSelector, options.fieldSelector);

  const guard = (event: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      log.error({ resource: what, event, err: errorMessage(err) }, `handling a ${what} event failed`);
    }
  };
  if (options.onAdd) listWatch.on('add', (object) => guard('add', () => options.onAdd!(object)));
  if (options.onUpdate) listWatch.on('update', (object) => guard('update', () => options.onUpdate!(object)));
  if (options.onDelete) listWatch.on('delete', (object) => guard('delete', () => options.onDelete!(object)));

  const run = () => {
    if (!stopped) listWatch.start().catch(fail);
  };
  const fail = (err: unknown) => {
    if (stopped) return;
    const delayMs = backoff.next();
    const attempt = backoff.attempts;
    const missing = options.optional === true && isNotFound(err);
    const problem = errorMessage(err);
    // Once per change of problem, and every 10th failure of the same one.
    if (problem !== lastProblem || attempt % 10 === 0) {
      const fields = { resource: what, reason: problem, attempt, retryInMs: delayMs };
      if (missing) log.info(fields, `${what} not installed yet (CRD missing?); retrying`);
      else if (options.optional) log.info(fields, `${what} not readable yet; retrying`);
      else log.warn(fields, `cannot list/watch ${what}; retrying`);
    }
    lastProblem = problem;
    guard('error', () => options.onError?.(err, { attempt, delayMs }));
    clearTimeout(timer);
    timer = setTimeout(run, delayMs);
  };
  listWatch.on('error', fail);

  return {
    synced,
    get: (name, namespace) => listWatch.get(name, namespace),
    list: (namespace) => listWatch.list(namespace),
    start() {
      if (!stopped) return;
      stopped = false;
      run();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await listWatch.stop().catch(() => undefined);
    },
  };
}
