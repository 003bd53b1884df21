import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApiException, CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { pino } from 'pino';
import { apiClient, createInformer, errorMessage, isConflict, isNotFound, isRequestTimeout, mergePatch, statusCode, statusPatch, TimedWatch } from '../src/kube/index.js';
import { Backoff, backoffDelay } from '../src/util/backoff.js';
import { fakeApiServer, kubeConfigFor, silentApiServer } from './helpers/fake-api-server.js';

const quiet = pino({ level: 'silent' });

async function eventually(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`never happened: ${what}`);
}

describe('backoff', () => {
  test('doubles from the first delay up to the cap, never above it', () => {
    const none = { initialMs: 1000, maxMs: 15_000, jitter: 0 };
    assert.deepEqual([1, 2, 3, 4, 5, 6, 50, 5000].map((n) => backoffDelay(n, none)), [1000, 2000, 4000, 8000, 15_000, 15_000, 15_000, 15_000]);
    for (let attempt = 1; attempt < 40; attempt++) {
      const delay = backoffDelay(attempt, { initialMs: 1000, maxMs: 15_000, random: () => 0.999 });
      assert.ok(delay <= 15_000 && delay >= 0.8 * Math.min(15_000, 1000 * 2 ** (attempt - 1)) - 1, `attempt ${attempt}: ${delay}`);
    }
  });

  test('jitter takes off up to its fraction; a success starts over', () => {
    assert.equal(backoffDelay(1, { initialMs: 1000, maxMs: 5000, random: () => 0.5 }), 900);
    assert.equal(backoffDelay(1, { initialMs: 1000, maxMs: 5000, jitter: 0.5, random: () => 1 - Number.EPSILON }), 500);
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
    assert.deepEqual([backoff.next(), backoff.next(), backoff.next()], [100, 200, 400]);
    assert.equal(backoff.attempts, 3);
    backoff.reset();
    assert.equal(backoff.next(), 100);
  });
});

describe('API errors and patches', () => {
  test('status codes, Status messages, not-found and conflict', () => {
    const notFound = new ApiException(404, 'Not Found', JSON.stringify({ kind: 'Status', message: 'pods "x" not found' }), {});
    const conflict = new ApiException(409, 'Conflict', { message: 'already exists' }, {});
    assert.equal(statusCode(notFound), 404);
    assert.equal(errorMessage(notFound), 'HTTP 404: pods "x" not found');
    assert.equal(errorMessage(conflict), 'HTTP 409: already exists');
    assert.ok(isNotFound(notFound) && !isNotFound(conflict) && isConflict(conflict));
    // A body that is not a Status is never quoted (it may hold an object's content).
    assert.equal(errorMessage(new ApiException(500, 'x', '<html>secret</html>', {})), 'HTTP 500');
    assert.equal(statusCode(Object.assign(new Error('gone'), { statusCode: 410 })), 410);
    assert.equal(statusCode(new Error('plain')), undefined);
    assert.deepEqual(statusPatch({ conditions: [] }), { status: { conditions: [] } });
    assert.ok(mergePatch.middleware?.length);
  });
});

describe('request timeouts against a server that never answers', () => {
  test('an API call of a kit client fails with a clear message instead of hanging', { timeout: 20_000 }, async () => {
    const silent = await silentApiServer();
    try {
      const core = apiClient(kubeConfigFor(silent.url, silent.caPem), CoreV1Api, { timeoutMs: 300 });
      const err = await core.readNamespace({ name: 'istio-system' }).then(
        () => assert.fail('answered'),
        (e: unknown) => e,
      );
      assert.ok(isRequestTimeout(err), `not a timeout: ${String(err)}`);
      assert.match(errorMessage(err), /no answer from the API server/);
      assert.equal(silent.requests(), 1);
    } finally {
      await silent.close();
    }
  });

  test('a watch whose response never starts ends with an error', { timeout: 20_000 }, async () => {
    const silent = await silentApiServer();
    try {
      const watch = new TimedWatch(kubeConfigFor(silent.url, silent.caPem), { requestTimeoutMs: 300 });
      const err = await new Promise<unknown>((resolve) => void watch.watch('/api/v1/pods', {}, () => undefined, resolve));
      assert.match(errorMessage(err), /watch \/api\/v1\/pods: no answer from the API server within 300ms/);
    } finally {
      await silent.close();
    }
  });

  test('an informer keeps retrying a silent server and stops cleanly', { timeout: 20_000 }, async () => {
    const silent = await silentApiServer();
    const config = kubeConfigFor(silent.url, silent.caPem);
    const core = apiClient(config, CoreV1Api, { timeoutMs: 200 });
    const errors: string[] = [];
    const informer = createInformer({
      config,
      path: '/api/v1/configmaps',
      list: () => core.listConfigMapForAllNamespaces(),
      what: 'configmaps',
      log: quiet,
      backoff: { initialMs: 10, maxMs: 20 },
      onError: (err) => errors.push(errorMessage(err)),
    });
    try {
      informer.start();
      await eventually('two failed attempts', () => errors.length >= 2);
      assert.match(errors[0]!, /no answer from the API server/);
    } finally {
      await informer.stop();
      await silent.close();
    }
  });
});

describe('informer', () => {
  const path = '/api/v1/configmaps';
  const configMap = (name: string, value: string): V1ConfigMap & Record<string, unknown> => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { value } });

  test('lists, follows a watch, re-watches when the server ends it, and re-lists with backoff after a failure', { timeout: 30_000 }, async () => {
    const api = await fakeApiServer({ [path]: [configMap('a', '1')] }, new Set(['t']));
    const config = kubeConfigFor(api.url, api.caPem, 't');
    const core = apiClient(config, CoreV1Api);
    const seen: string[] = [];
    const problems: string[] = [];
    let listed = 0;
    const informer = createInformer<V1ConfigMap>({
      config,
      path,
      list: () => core.listConfigMapForAllNamespaces(),
      what: 'configmaps',
      log: quiet,
      backoff: { initialMs: 10, maxMs: 50 },
      onAdd: (cm) => seen.push(`add ${cm.metadata?.name}=${cm.data?.value}`),
      onUpdate: (cm) => seen.push(`update ${cm.metadata?.name}=${cm.data?.value}`),
      onDelete: (cm) => seen.push(`delete ${cm.metadata?.name}`),
      onListed: () => listed++,
      onError: (err) => problems.push(errorMessage(err)),
    });
    try {
      informer.start();
      await informer.synced;
      assert.deepEqual(seen, ['add a=1']);
      assert.equal(informer.get('a', 'default')?.data?.value, '1');
      await eventually('watching', () => api.watching(path));
      api.emit(path, 'ADDED', configMap('b', '2'));
      api.emit(path, 'MODIFIED', configMap('a', '3'));
      await eventually('watch events', () => seen.length === 3);
      assert.deepEqual(seen.slice(1), ['add b=2', 'update a=3']);

      // The server ends the watch (timeoutSeconds): a new watch, no new list.
      api.endWatches(path);
      await eventually('watching again', () => api.watching(path));
      assert.equal(api.lists(path), 1);

      // The watch fails: the informer retries with backoff and watches again from where it was.
      api.failures.set(path, 500);
      api.endWatches(path);
      await eventually('a failure seen', () => problems.length >= 2);
      assert.match(problems[0]!, /HTTP 500/);
      api.failures.delete(path);
      await eventually('watching after the failure', () => api.watching(path));
      api.emit(path, 'DELETED', configMap('b', '2'));
      await eventually('delete b', () => seen.includes('delete b'));
      assert.equal(listed, 1);
    } finally {
      await informer.stop();
      await api.close();
    }
  });

  test('a list that fails is retried until it succeeds; then the informer is synced', { timeout: 20_000 }, async () => {
    const api = await fakeApiServer({ [path]: [configMap('a', '1')] }, new Set(['t']));
    api.failures.set(path, 403);
    const config = kubeConfigFor(api.url, api.caPem, 't');
    const core = apiClient(config, CoreV1Api);
    const problems: string[] = [];
    const informer = createInformer<V1ConfigMap>({
      config,
      path,
      list: () => core.listConfigMapForAllNamespaces(),
      what: 'configmaps',
      log: quiet,
      backoff: { initialMs: 10, maxMs: 50 },
      onError: (err) => problems.push(errorMessage(err)),
    });
    try {
      informer.start();
      await eventually('three failures', () => problems.length >= 3);
      assert.match(problems[0]!, /HTTP 403: failing/);
      api.failures.delete(path);
      await informer.synced;
      assert.equal(informer.list().length, 1);
    } finally {
      await informer.stop();
      await api.close();
    }
  });

  test('a handler that throws is logged and the informer carries on', { timeout: 20_000 }, async () => {
    const api = await fakeApiServer({ [path]: [configMap('a', '1'), configMap('b', '2')] }, new Set(['t']));
    const config = kubeConfigFor(api.url, api.caPem, 't');
    const core = apiClient(config, CoreV1Api);
    const names: string[] = [];
    const informer = createInformer<V1ConfigMap>({
      config,
      path,
      list: () => core.listConfigMapForAllNamespaces(),
      what: 'configmaps',
      log: quiet,
      onAdd: (cm) => {
        if (cm.metadata?.name === 'a') throw new Error('bad object');
        names.push(cm.metadata!.name!);
      },
    });
    try {
      informer.start();
      await informer.synced;
      assert.deepEqual(names, ['b']);
      assert.equal(informer.list().length, 2);
    } finally {
      await informer.stop();
      await api.close();
    }
  });
});
