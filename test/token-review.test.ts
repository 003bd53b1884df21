// TokenReview of CA and xDS callers: audience and legacy-token checks, cache, bounded concurrency and timeouts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { CertificateAuthorizer, cachedPodDirectory, type TokenReviewer, type TokenReviewResult } from '../src/controlplane/ca/authorize.js';
import { CaRequestError } from '../src/controlplane/ca/errors.js';
import { BoundedTokenReviewer, unverifiedJwtPayload } from '../src/controlplane/ca/token-review.js';

function fakeJwt(name: string, claims: Record<string, unknown> = {}): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'RS256' })}.${encode({ sub: name, ...claims })}.c2lnbmF0dXJl`;
}

/** A reviewer that answers what `answer` says, after `gate` resolves, and counts what it was asked. */
class ScriptedReviewer implements TokenReviewer {
  calls = 0;
  active = 0;
  maxActive = 0;
  signals: AbortSignal[] = [];
  gate: Promise<void> = Promise.resolve();
  constructor(private readonly answer: (token: string, audiences: string[]) => TokenReviewResult) {}
  async review(token: string, audiences: string[], signal?: AbortSignal): Promise<TokenReviewResult> {
    this.calls++;
    if (signal) this.signals.push(signal);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await this.gate;
      return this.answer(token, audiences);
    } finally {
      this.active--;
    }
  }
}

const serviceAccount = (audiences: string[]): TokenReviewResult => ({ authenticated: true, username: 'system:serviceaccount:shop:cart', audiences });

function authorizer(reviewer: TokenReviewer, tokenReview = {}): CertificateAuthorizer {
  return new CertificateAuthorizer({ trustDomain: 'cluster.local', clusterName: 'c1', systemNamespace: 'istio-system', tokenReviewer: reviewer, pods: cachedPodDirectory(() => []), tokenReview });
}

async function refusal(promise: Promise<unknown>): Promise<CaRequestError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof CaRequestError, `not a CaRequestError: ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('audiences and token kinds', () => {
  test('a token the API server does not report as valid for istio-ca is refused, naming the audience', async () => {
    // What a TokenReview of a token issued for the API server returns on a cluster whose --api-audiences
    // includes istio-ca is authenticated with audiences [istio-ca]; on one where the token is for another
    // audience, the server may still authenticate it (older servers ignore spec.audiences) with other audiences.
    const reviewer = new ScriptedReviewer(() => serviceAccount(['https://kubernetes.default.svc.cluster.local']));
    const err = await refusal(authorizer(reviewer).authenticate({ authorization: `Bearer ${fakeJwt('a')}` }));
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.message, /not valid for audience istio-ca/);
    const none = await refusal(authorizer(new ScriptedReviewer(() => serviceAccount([]))).authenticate({ authorization: `Bearer ${fakeJwt('b')}` }));
    assert.match(none.message, /not valid for audience istio-ca/);
  });

  test('a legacy Secret-based token is refused without a TokenReview, even if the API server would accept it', async () => {
    const reviewer = new ScriptedReviewer((_token, audiences) => serviceAccount(audiences));
    const legacy = fakeJwt('reader', { iss: 'kubernetes/serviceaccount', 'kubernetes.io/serviceaccount/secret.name': 'istio-reader-token-x', 'kubernetes.io/serviceaccount/namespace': 'istio-system' });
    const err = await refusal(authorizer(reviewer).authenticate({ authorization: `Bearer ${legacy}` }));
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.message, /legacy Secret-based service account token/);
    assert.equal(reviewer.calls, 0);
  });

  test('what is not a JWT costs no TokenReview', async () => {
    const reviewer = new ScriptedReviewer((_token, audiences) => serviceAccount(audiences));
    for (const garbage of ['x', 'a.b', 'a.b.c', `${fakeJwt('ok').split('.')[0]}.bm90IGpzb24.sig`]) {
      const err = await refusal(authorizer(reviewer).authenticate({ authorization: `Bearer ${garbage}` }));
      assert.match(err.message, /not a JWT/);
    }
    assert.equal(reviewer.calls, 0);
  });

  test('a projected token valid for istio-ca is accepted', async () => {
    const reviewer = new ScriptedReviewer((_token, audiences) => serviceAccount(audiences));
    const caller = await authorizer(reviewer).authenticate({ authorization: `Bearer ${fakeJwt('cart', { aud: ['istio-ca'] })}` });
    assert.equal(caller.username, 'system:serviceaccount:shop:cart');
  });
});

describe('bounded TokenReview', () => {
  test('one TokenReview per token while cached, shared by concurrent callers; rejections cached for less time', async () => {
    let now = 1_000_000;
    const reviewer = new ScriptedReviewer((token, audiences) => (unverifiedJwtPayload(token)?.sub === 'good' ? serviceAccount(audiences) : { authenticated: false, error: 'invalid' }));
    const auth = authorizer(reviewer, { positiveTtlMs: 30_000, negativeTtlMs: 5_000, now: () => now });
    const good = { authorization: `Bearer ${fakeJwt('good')}` };
    await Promise.all(Array.from({ length: 50 }, () => auth.authenticate(good)));
    await auth.authenticate(good);
    assert.equal(reviewer.calls, 1, '51 calls with one token, one TokenReview');

    const bad = { authorization: `Bearer ${fakeJwt('bad')}` };
    for (let i = 0; i < 3; i++) await refusal(auth.authenticate(bad));
    assert.equal(reviewer.calls, 2, 'a rejection is cached too');
    now += 6_000;
    await refusal(auth.authenticate(bad));
    await auth.authenticate(good);
    assert.equal(reviewer.calls, 3, 'after 6 s the rejection is reviewed again, the acceptance is still cached');
    now += 30_000;
    await auth.authenticate(good);
    assert.equal(reviewer.calls, 4, 'after its TTL the acceptance is reviewed again');
  });

  test('a cached acceptance never outlives the token', async () => {
    let now = 1_000_000;
    const reviewer = new ScriptedReviewer((_token, audiences) => serviceAccount(audiences));
    const auth = authorizer(reviewer, { positiveTtlMs: 30_000, now: () => now });
    const expiring = { authorization: `Bearer ${fakeJwt('soon', { exp: (now + 2_000) / 1000 })}` };
    await auth.authenticate(expiring);
    now += 2_500;
    await auth.authenticate(expiring);
    assert.equal(reviewer.calls, 2);
  });

  test('the cache holds a bounded number of entries', async () => {
    const reviewer = new ScriptedReviewer(() => ({ authenticated: false }));
    const bounded = new BoundedTokenReviewer(reviewer, { maxEntries: 100 });
    for (let i = 0; i < 1000; i++) await bounded.review(fakeJwt(`t${i}`), ['istio-ca']);
    assert.ok(bounded.cachedEntries <= 100, `${bounded.cachedEntries} entries`);
  });

  test('at most maxConcurrent reviews run; a bounded number wait; the rest are refused with RESOURCE_EXHAUSTED', async () => {
    let open!: () => void;
    const reviewer = new ScriptedReviewer((_token, audiences) => serviceAccount(audiences));
    reviewer.gate = new Promise<void>((resolve) => (open = resolve));
    const auth = authorizer(reviewer, { maxConcurrent: 4, maxQueued: 10, timeoutMs: 60_000 });
    const calls = Array.from({ length: 30 }, (_, i) => auth.authenticate({ authorization: `Bearer ${fakeJwt(`t${i}`)}` }).then(
      () => 'ok',
      (err: CaRequestError) => err,
    ));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(reviewer.active, 4, 'four reviews in flight');
    open();
    const results = await Promise.all(calls);
    assert.equal(results.filter((r) => r === 'ok').length, 14, '4 running + 10 queued are served');
    const refused = results.filter((r): r is CaRequestError => r !== 'ok');
    assert.equal(refused.length, 16);
    for (const err of refused) {
      assert.equal(err.code, status.RESOURCE_EXHAUSTED);
      assert.match(err.message, /too many token reviews in progress/);
    }
    assert.equal(reviewer.maxActive, 4);
  });

  test('a TokenReview that does not answer times out with UNAVAILABLE, and its request is aborted', async () => {
    const reviewer = new ScriptedReviewer(() => serviceAccount(['istio-ca']));
    reviewer.gate = new Promise<void>(() => undefined);
    const auth = authorizer(reviewer, { timeoutMs: 50 });
    const err = await refusal(auth.authenticate({ authorization: `Bearer ${fakeJwt('slow')}` }));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.message, /TokenReview did not answer within 0.05 s/);
    assert.equal(reviewer.signals.length, 1);
    assert.equal(reviewer.signals[0]!.aborted, true, 'the HTTP request is cancelled, not left running');
  });

  test('a caller waiting for a slot is bounded by the same deadline', async () => {
    const reviewer = new ScriptedReviewer(() => serviceAccount(['istio-ca']));
    reviewer.gate = new Promise<void>(() => undefined);
    const auth = authorizer(reviewer, { maxConcurrent: 1, timeoutMs: 50 });
    const first = refusal(auth.authenticate({ authorization: `Bearer ${fakeJwt('a')}` }));
    const second = await refusal(auth.authenticate({ authorization: `Bearer ${fakeJwt('b')}` }));
    assert.ok([status.UNAVAILABLE, status.RESOURCE_EXHAUSTED].includes(second.code), `code ${second.code}`);
    assert.match(second.message, /within 0.05 s/);
    assert.equal((await first).code, status.UNAVAILABLE);
    assert.ok(reviewer.calls <= 2);
  });
});
