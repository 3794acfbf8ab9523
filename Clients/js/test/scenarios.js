// The browser test scenarios of broker-client.js, run by scripts/browser-test in headless Chromium
// against real brokers. Each scenario waits for events or conditions with generous timeouts; none
// decides by sleeping. The runner restarts brokers, swaps journals, and cuts the network on request.
import { BrokerClient } from '../broker-client.js';

const cfg = await (await fetch('/_runner/config')).json();
const post = (path, body) => fetch(path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
const log = (text) => post('/_runner/log', text);
addEventListener('error', (e) => log(`uncaught: ${e.message}`));
addEventListener('unhandledrejection', (e) => log(`unhandled rejection: ${e.reason && (e.reason.stack || e.reason.message || e.reason)}`));

async function control(action, args = {}) {
  const response = await post('/_runner/control', { action, ...args });
  const value = await response.json();
  if (!response.ok) throw new Error(`control ${action}: ${value.error}`);
  return value;
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function eq(actual, expected, message) {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${message}: expected ${b.length > 300 ? `${b.slice(0, 300)}…` : b}, got ${a.length > 300 ? `${a.slice(0, 300)}…` : a}`);
}

// Waits until check() returns something truthy (checked every 10 ms), or fails after timeout.
async function until(check, what, timeout = 30000) {
  const deadline = performance.now() + timeout;
  for (;;) {
    const value = check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// The next event `name` of `client` for which pred(value) holds.
function nextEvent(client, name, pred = () => true, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`timed out after ${timeout} ms waiting for event ${name}`)); }, timeout);
    const off = client.on(name, (value) => {
      if (!pred(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

async function rejectsWith(promise, code, what) {
  try {
    await promise;
  } catch (e) {
    eq(e.code, code, `${what}: error code`);
    return e;
  }
  throw new Error(`${what}: resolved, expected a rejection with ${code}`);
}

const range = (n, from = 1) => Array.from({ length: n }, (_, i) => i + from);

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });

// ---------------------------------------------------------------------------------------------

scenario('text-and-binary', async (t) => {
  const a = t.client(cfg.main);
  const got = [];
  const sub = a.subscribe('tb/#', (m) => got.push(m));
  eq(await sub.ready, {}, 'subscribed reply');
  assert(sub.active, 'subscription active');
  const ackText = await a.publish('tb/text', { hello: 'wörld', n: 1 }, { retain: true });
  assert(Number.isInteger(ackText.offset), 'a retained text publish is acked with an offset');
  eq(await a.publish('tb/text-live', [1, 'two', null]), {}, 'a live publish is acked without an offset');
  const bytes = new Uint8Array([0, 1, 2, 250, 255]);
  const ackBin = await a.publish('tb/bin', bytes, { retain: true });
  assert(ackBin.offset > ackText.offset, 'binary retained ack has a later offset');
  eq(await a.publish('tb/bin-live', new Uint8Array(0)), {}, 'empty binary live publish');
  await a.publish('tb/f32', new Float32Array([1.5]));
  await until(() => got.length >= 5, '5 messages');
  const by = (topic) => got.filter((m) => m.topic === topic);
  eq(by('tb/text').map((m) => [m.data, m.offset, m.replay, m.binary]), [[{ hello: 'wörld', n: 1 }, ackText.offset, false, undefined]], 'text message');
  eq(by('tb/text-live').map((m) => [m.data, m.offset]), [[[1, 'two', null], undefined]], 'live text message');
  const bin = by('tb/bin');
  eq(bin.length, 1, 'one binary message');
  assert(bin[0].binary instanceof Uint8Array, 'msg.binary is a Uint8Array');
  eq([...bin[0].binary], [...bytes], 'binary payload');
  eq([bin[0].data, bin[0].offset, bin[0].replay], [undefined, ackBin.offset, false], 'binary message fields');
  eq(by('tb/bin-live').map((m) => [m.binary.length, m.offset]), [[0, undefined]], 'empty live binary message');
  eq([...by('tb/f32')[0].binary], [...new Uint8Array(new Float32Array([1.5]).buffer)], 'a typed array goes as its bytes');

  // Another connection replays the retained ones, text and binary, flagged replay.
  const b = t.client(cfg.main);
  const replayed = [];
  await b.subscribe('tb/#', (m) => replayed.push(m), { history: 1 }).ready;
  await until(() => replayed.length >= 2, 'the replay of 2 retained messages');
  eq(replayed.map((m) => [m.topic, m.offset, m.replay, m.binary ? [...m.binary] : m.data]),
    [['tb/text', ackText.offset, true, { hello: 'wörld', n: 1 }], ['tb/bin', ackBin.offset, true, [...bytes]]], 'replay');

  // Errors go to the request's promise, with the broker's code.
  await rejectsWith(a.publish('$sys/x', 1), 'forbidden', 'publish to $sys');
  await rejectsWith(a.publish('tb/+', 1), 'invalid_topic', 'text publish to a filter');
  await rejectsWith(a.publish('tb/+', bytes), 'invalid_topic', 'binary publish to a filter');
  await rejectsWith(a.publish('tb/x', undefined), 'bad_request', 'undefined data');
  await rejectsWith(a.publish('tb/big', 'x'.repeat(a.welcome.maxMessageBytes)), 'too_large', 'past maxMessageBytes');
  const bad = a.subscribe('tb/#/x', () => {});
  const refused = await rejectsWith(bad.ready, 'invalid_topic', 'subscribe to a bad filter');
  eq(refused.filter, 'tb/#/x', 'the error names the filter');
  assert(bad.closed, 'a refused subscription is closed');
  assert(a.errors.some((e) => e.code === 'invalid_topic' && e.filter === 'tb/#/x'), 'the refusal is also an error event');
  a.errors.length = 0;
  eq(await a.publish('tb/noack', 1, { ack: false }), {}, 'publish without ack');
  assert((await a.ping()) >= 0, 'ping round trip');

  // After unsubscribe nothing more arrives (b, still subscribed, shows the message went out).
  await sub.unsubscribe();
  assert(sub.closed, 'unsubscribed');
  const before = got.length;
  await b.publish('tb/after', 1);
  await until(() => replayed.some((m) => m.topic === 'tb/after'), 'b to get tb/after');
  await a.ping();
  eq(got.length, before, 'no message after unsubscribe');
});

scenario('many-subscriptions', async (t) => {
  const h = t.client(cfg.main);
  const counts = new Array(200).fill(0);
  const all = [];
  const subs = range(200, 0).map((i) => h.subscribe(`many/${i}`, (m) => {
    if (m.data.i !== i) throw new Error(`many/${i} got ${JSON.stringify(m.data)}`);
    counts[i] += 1;
  }, { history: 0 }));
  const wild = h.subscribe('many/#', (m) => all.push(m), { history: 0 });
  await Promise.all([...subs.map((s) => s.ready), wild.ready]);
  const received = h.stats.received;
  await control('batch', { messages: range(200, 0).map((i) => ({ topic: `many/${i}`, data: { i } })) });
  await until(() => all.length >= 200 && counts.every((c) => c === 1), '200 messages, one per subscription');
  await Promise.all(subs.filter((_, i) => i % 2 === 0).map((s) => s.unsubscribe()));
  await control('batch', { messages: range(200, 0).map((i) => ({ topic: `many/${i}`, data: { i, round: 2 } })) });
  await until(() => all.length >= 400, 'the second round');
  await h.ping(); // anything still on its way arrives before the pong
  eq(counts.map((c, i) => c === (i % 2 === 0 ? 1 : 2)).every(Boolean), true, 'odd subscriptions got 2, unsubscribed even ones 1');
  eq(all.length, 400, 'the wildcard subscription got every message once');
  eq(h.stats.received - received, 400, 'one frame per publish, fanned out locally to the matching subscriptions');
  eq(h.errors.map((e) => e.message), [], 'no handler errors');

  // Two local subscriptions to one filter: one broker subscription each way; unsubscribing one
  // keeps the other.
  const first = [];
  const second = [];
  const s1 = h.subscribe('twice/#', (m) => first.push(m), { history: 0 });
  const s2 = h.subscribe('twice/#', (m) => second.push(m), { history: 0 });
  await Promise.all([s1.ready, s2.ready]);
  await control('publish', { topic: 'twice/a', data: 1, retain: false });
  await until(() => first.length === 1 && second.length === 1, 'both subscriptions to get the message');
  await s1.unsubscribe();
  await control('publish', { topic: 'twice/a', data: 2, retain: false });
  await until(() => second.length === 2, 'the remaining subscription to get the next one');
  await h.ping();
  eq([first.length, second.length], [1, 2], 'unsubscribing one of two kept the other');
});

scenario('restart-mid-stream', async (t) => {
  const c = t.client(cfg.main, { maxReconnectDelay: 1000 });
  const seen = [];
  const gaps = [];
  let disconnects = 0;
  c.on('gap', (g) => gaps.push(g));
  c.on('disconnect', () => { disconnects += 1; });
  const sub = c.subscribe('stream/#', (m) => seen.push(m));
  await sub.ready;
  const count = 300;
  const { offsets } = await control('stream', {
    topics: ['stream/a', 'stream/b', 'stream/c'], count,
    restarts: [{ after: 100, signal: 'SIGKILL' }, { after: 200, signal: 'SIGTERM' }],
  });
  await until(() => seen.length >= count, `${count} messages`, 60000);
  await c.ping();
  eq(seen.map((m) => m.data.seq), range(count), 'every sequence number exactly once, in order');
  eq(seen.map((m) => m.offset), offsets, 'the offsets the publisher got, in order');
  assert(disconnects >= 2, `the two restarts disconnected the client (${disconnects} disconnects)`);
  eq(gaps, [], 'no gap event');
  eq(sub.lastOffset, offsets[offsets.length - 1], 'subscription lastOffset');
  t.note(`${disconnects} disconnects, ${c.stats.reconnects} reconnect attempts, ${seen.filter((m) => m.replay).length} messages came by resume replay, ${c.stats.duplicates} duplicates dropped by offset`);
});

scenario('example-chart-restart', async (t) => {
  // The example page itself, in an iframe: a stream of points with a kill -9 of the broker in the
  // middle; the chart must end with every point once.
  const frame = document.createElement('iframe');
  frame.style.cssText = 'width:900px;height:480px;border:1px solid #ccc';
  frame.src = `/examples/live-chart.html?url=${encodeURIComponent(cfg.main)}&topic=${encodeURIComponent('chart/#')}&points=1000`;
  document.body.append(frame);
  try {
    const status = () => frame.contentDocument && frame.contentDocument.getElementById('status');
    await until(() => status() && status().textContent.startsWith('connected'), 'the chart to connect');
    const { offsets } = await control('stream', { topics: ['chart/cpu', 'chart/load'], count: 120, points: true, restarts: [{ after: 50, signal: 'SIGKILL' }] });
    await until(() => status().textContent.includes(`last offset ${offsets[offsets.length - 1]} · 120 points`), 'the chart to show 120 points', 30000);
    const text = status().textContent;
    assert(/repeated 0 · gaps 0/.test(text), `no repeated point, no gap: ${text}`);
    assert(!/reconnects 0$/.test(text), `the chart reconnected: ${text}`);
    t.note(text);
  } finally {
    frame.remove();
  }
});

scenario('example-live-view', async (t) => {
  const frame = document.createElement('iframe');
  frame.src = `/examples/live-view.html?url=${encodeURIComponent(cfg.main)}&topic=${encodeURIComponent('lv/#')}`;
  document.body.append(frame);
  try {
    const doc = () => frame.contentDocument;
    await until(() => doc() && doc().getElementById('status') && doc().getElementById('status').textContent.startsWith('connected'), 'the live view to connect');
    const { offset } = await control('publish', { topic: 'lv/a', data: { hello: 1 } });
    await control('publish', { topic: 'lv/b', data: 'live', retain: false });
    await until(() => doc().getElementById('rows').rows.length >= 2, 'two rows');
    const rows = [...doc().getElementById('rows').rows].map((r) => [...r.cells].map((c) => c.textContent));
    eq(rows, [['lv/b', '"live"', '', 'live'], ['lv/a', '{"hello":1}', String(offset), 'live']], 'rows, newest first');
  } finally {
    frame.remove();
  }
});

scenario('epoch-change', async (t) => {
  await control('publish', { topic: 'state/a', data: { v: 1 } });
  await control('publish', { topic: 'state/b', data: { v: 1 } });
  const d = t.client(cfg.main, { maxReconnectDelay: 1000 });
  const seen = [];
  const sub = d.subscribe('state/#', (m) => seen.push(m));
  await sub.ready;
  await until(() => seen.length >= 2, 'the current state');
  const oldEpoch = d.welcome.epoch;
  const oldHighest = Math.max(...seen.map((m) => m.offset));
  const gap = nextEvent(d, 'gap');
  const { acks } = await control('epoch', { publish: [{ topic: 'state/a', data: { v: 2 } }, { topic: 'state/b', data: { v: 2 } }] });
  eq(await gap, { filter: 'state/#', reason: 'epoch_changed', since: oldHighest }, 'gap event');
  await until(() => seen.length >= 4, 'the new state replayed');
  assert(d.welcome.epoch !== oldEpoch, 'a new epoch');
  eq(seen.slice(2).map((m) => [m.topic, m.data, m.offset, m.replay]),
    [['state/a', { v: 2 }, acks[0].offset, true], ['state/b', { v: 2 }, acks[1].offset, true]], 'the new journal\'s state');
  assert(acks[1].offset < oldHighest, 'offsets of the new journal start again below the old ones (and were not taken for duplicates)');
  const ack = await d.publish('state/a', { v: 3 }, { retain: true });
  await until(() => seen.length >= 5, 'a live message in the new epoch');
  eq([seen[4].data, seen[4].offset], [{ v: 3 }, ack.offset], 'live message');
  eq(sub.epoch, d.welcome.epoch, 'the subscription follows the new epoch');
});

scenario('offline-online', async (t) => {
  const e = t.client(cfg.main, { maxReconnectDelay: 500 });
  const seen = [];
  const sub = e.subscribe('off/#', (m) => seen.push(m));
  await sub.ready;
  const lost = nextEvent(e, 'disconnect');
  await control('proxy', { mode: 'offline' });
  await lost;
  assert(e.state !== 'connected', 'not connected while offline');
  const mine = e.publish('off/mine', { q: 1 }, { retain: true }); // queued until online
  // A client that has never connected: its queue is bounded.
  const f = t.client(cfg.main, { maxQueue: 3, maxReconnectDelay: 500 });
  const queued = [1, 2, 3].map((i) => f.publish('off/f', { i }, { retain: true }));
  await rejectsWith(f.publish('off/f', { i: 4 }), 'queue_full', 'the 4th publish past maxQueue 3');
  for (const seq of range(5)) await control('publish', { topic: 'off/x', data: { seq } });
  await control('proxy', { mode: 'online' });
  const ackMine = await mine;
  assert(Number.isInteger(ackMine.offset), 'the queued publish went out and was acked');
  const fAcks = await Promise.all(queued);
  await until(() => seen.filter((m) => m.topic === 'off/f').length >= 3 && seen.some((m) => m.topic === 'off/mine')
    && seen.filter((m) => m.topic === 'off/x').length >= 5, 'everything published while offline');
  await e.ping();
  eq(seen.filter((m) => m.topic === 'off/x').map((m) => m.data.seq), range(5), 'retained messages missed offline, once each');
  eq(seen.filter((m) => m.topic === 'off/mine').map((m) => m.offset), [ackMine.offset], 'own queued message once');
  eq(seen.filter((m) => m.topic === 'off/f').map((m) => [m.data.i, m.offset]), fAcks.map((a, i) => [i + 1, a.offset]), 'the other client\'s queued messages, in order');
});

scenario('dead-connection', async (t) => {
  const g = t.client(cfg.main, { pingInterval: 500, pingTimeout: 1000, connectTimeout: 1500, maxReconnectDelay: 500 });
  const seen = [];
  const sub = g.subscribe('dead/#', (m) => seen.push(m));
  await sub.ready;
  const dropped = nextEvent(g, 'disconnect', undefined, 20000);
  const t0 = performance.now();
  await control('proxy', { mode: 'blackhole' }); // sockets stay open, bytes vanish
  const event = await dropped;
  const detection = performance.now() - t0;
  assert(/ping/.test(event.reason), `dropped for the unanswered ping (${event.reason})`);
  await control('publish', { topic: 'dead/x', data: { n: 1 } });
  // Reconnect attempts stall in the black hole too (TCP up, no upgrade): the connect timeout ends them.
  const stalled = await nextEvent(g, 'disconnect', (ev) => /welcome/.test(ev.reason), 20000);
  await control('proxy', { mode: 'online' });
  await until(() => g.state === 'connected' && seen.some((m) => m.topic === 'dead/x'), 'reconnected and resumed', 20000);
  await g.ping();
  eq(seen.filter((m) => m.topic === 'dead/x').length, 1, 'the message published during the outage, once');
  t.note(`dead connection detected after ${Math.round(detection)} ms (pingInterval 500, pingTimeout 1000); stalled connect abandoned: "${stalled.reason}"`);
});

scenario('jwt-refresh', async (t) => {
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    return (await control('token', { broker: 'auth', sub: 'alice', subscribe: ['dash/#'], publish: ['dash/alice/#'], ttl: '6s' })).token;
  };
  const j = t.client(cfg.auth, { getToken });
  const refreshed = [];
  let disconnects = 0;
  j.on('refreshed', (r) => refreshed.push(r));
  j.on('disconnect', () => { disconnects += 1; });
  const welcome = await nextEvent(j, 'welcome');
  eq(welcome.client, 'alice', 'welcome.client is the token\'s sub');
  assert(typeof welcome.exp === 'number', 'welcome.exp');
  const seen = [];
  const sub = j.subscribe('dash/#', (m) => seen.push(m));
  await sub.ready;
  const ack = await j.publish('dash/alice/x', { n: 1 }, { retain: true });
  await rejectsWith(j.publish('other/x', 1), 'forbidden', 'publish outside the token\'s publish claim');
  await rejectsWith(j.publish('dash/bob/x', new Uint8Array([1])), 'forbidden', 'binary publish outside the claim');
  const denied = j.subscribe('other/#', () => {});
  await rejectsWith(denied.ready, 'forbidden', 'subscribe outside the subscribe claim');
  j.errors.length = 0;
  // The token lives 6 s: the client refreshes at half its life, over the open connection.
  await until(() => refreshed.length >= 2, 'two refreshes', 30000);
  assert(refreshed[1].exp > welcome.exp, 'refreshed exp is later');
  await until(() => Date.now() / 1000 > welcome.exp + 1, 'the first token\'s exp to pass', 30000);
  eq([j.state, j.welcome.session, disconnects], ['connected', welcome.session, 0], 'the same connection outlived its first token');
  await j.publish('dash/alice/y', { n: 2 });
  await until(() => seen.some((m) => m.topic === 'dash/alice/y'), 'a message after the first exp');
  assert(calls >= 3, `getToken called on connect and per refresh (${calls})`);
  eq(j.errors.map((e) => e.code), [], 'no error events');

  // The HTTP API from this (cross) origin: CORS with a preflight for the Authorization header.
  const token = await getToken();
  const retained = await fetch(`${cfg.authHttp}/api/retained?topic=${encodeURIComponent('dash/#')}`, { headers: { authorization: `Bearer ${token}` } });
  eq(retained.status, 200, 'GET /api/retained with a JWT');
  const body = await retained.json();
  assert(body.messages.some((m) => m.topic === 'dash/alice/x' && m.offset === ack.offset), 'the retained message over HTTP');
  const anonymous = await fetch(`${cfg.authHttp}/api/retained?topic=${encodeURIComponent('dash/#')}`);
  eq(anonymous.status, 401, 'no token: 401 (readable cross-origin)');
});

scenario('refresh-narrows-permissions', async (t) => {
  // A refreshed token that no longer covers a subscription ends it (unsubscribed, reason forbidden).
  // Wide tokens to connect, narrow ones to refresh (getToken is called for a refresh while connected).
  const getToken = async () => (await control('token', { sub: 'frank', subscribe: r.state === 'connected' ? ['dash/#'] : ['dash/#', 'news/#'], ttl: '6s' })).token;
  const r = t.client(cfg.auth, { getToken });
  const dash = r.subscribe('dash/#', () => {});
  const news = r.subscribe('news/#', () => {});
  await Promise.all([dash.ready, news.ready]);
  await until(() => r.errors.some((e) => e.code === 'forbidden' && e.filter === 'news/#'), 'the end of news/#', 20000);
  assert(news.closed && !news.active, 'news/# ended');
  assert(dash.active && !dash.closed, 'dash/# still active');
});

scenario('rate-limited', async (t) => {
  // The auth broker allows 20 publishes/s per connection (burst 20): past it, rate_limited.
  const { token } = await control('token', { sub: 'grace', publish: ['rl/#'], ttl: '1h' });
  const c = t.client(cfg.auth, { token });
  await nextEvent(c, 'welcome');
  const outcomes = await Promise.allSettled(range(60).map((i) => c.publish('rl/x', { i })));
  const ok = outcomes.filter((o) => o.status === 'fulfilled').length;
  const limited = outcomes.filter((o) => o.status === 'rejected' && o.reason.code === 'rate_limited').length;
  eq(ok + limited, 60, 'every publish acked or rate_limited');
  assert(ok >= 20 && limited >= 1, `a burst of 20 passes, the rest is limited (${ok} ok, ${limited} limited)`);
  assert(c.state === 'connected', 'the connection stays');
  t.note(`${ok} acked, ${limited} rate_limited`);
});

scenario('token-expiry', async (t) => {
  // A static token: at exp the broker sends token_expired and closes with 1008; reconnecting with
  // the same token is pointless, so the client closes.
  const { token } = await control('token', { sub: 'carol', subscribe: ['dash/#'], ttl: '5s' });
  const k = t.client(cfg.auth, { token });
  const welcome = await nextEvent(k, 'welcome');
  eq(welcome.client, 'carol', 'static token accepted');
  await until(() => k.errors.some((e) => e.code === 'token_expired'), 'token_expired', 20000);
  await until(() => k.state === 'closed', 'the client to close', 20000);

  // getToken whose refresh is refused (unauthorized): error events; at exp the broker closes, and
  // the client reconnects with a fresh token. Valid tokens to connect, a malformed one (at once,
  // no token signing on a busy machine) to refresh: getToken is called for a refresh while connected.
  const welcomes = [];
  const getToken = async () => (m.state === 'connected' ? 'not-a-jwt'
    : (await control('token', { sub: 'dave', subscribe: ['dash/#'], ttl: '5s' })).token);
  const m = t.client(cfg.auth, { getToken, maxReconnectDelay: 500 });
  m.on('welcome', (w) => welcomes.push(w));
  const sub = m.subscribe('dash/#', () => {});
  await sub.ready;
  await until(() => m.errors.some((e) => e.code === 'unauthorized'), 'the refused refresh', 20000);
  await until(() => welcomes.length >= 2, 'a reconnect with a fresh token', 20000);
  assert(welcomes[1].session !== welcomes[0].session && welcomes[1].exp > welcomes[0].exp, 'a new connection with a new token');
  assert(m.errors.some((e) => e.code === 'token_expired'), 'token_expired reported');
  await until(() => sub.active, 'the subscription resumed on the new connection');
});

scenario('origins-and-cors', async (t) => {
  // A broker that allows no other origin refuses this page's upgrade (403): no open, close 1006.
  const ws = new WebSocket(cfg.strict);
  const outcome = await new Promise((resolve) => {
    ws.onopen = () => resolve('open');
    ws.onclose = (e) => resolve(`close ${e.code}`);
  });
  eq(outcome, 'close 1006', 'refused upgrade from another origin');
  const s = t.client(cfg.strict, { maxReconnectDelay: 200 });
  let failures = 0;
  s.on('disconnect', () => { failures += 1; });
  await until(() => failures >= 2, 'two refused attempts');
  assert(s.welcome === null, 'never connected');
  let corsRefused = false;
  try { await fetch(`${cfg.strictHttp}/api/retained?topic=x`); } catch (e) { corsRefused = e instanceof TypeError; }
  assert(corsRefused, 'the HTTP API of a broker that does not allow this origin is unreadable (no CORS)');

  // The main broker allows this origin: CORS on the HTTP API, with and without preflight.
  const published = await fetch(`${cfg.mainHttp}/api/publish?topic=cors/x&retain=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
  eq(published.status, 200, 'POST /api/publish (preflighted)');
  const { offset } = await published.json();
  assert(Number.isInteger(offset), 'offset of the HTTP publish');
  const retained = await fetch(`${cfg.mainHttp}/api/retained?topic=${encodeURIComponent('cors/#')}`);
  eq(retained.status, 200, 'GET /api/retained');
  const body = await retained.json();
  assert(typeof body.epoch === 'string', 'epoch over CORS');
  eq(body.messages.map((m) => [m.topic, m.offset, m.data]), [['cors/x', offset, { a: 1 }]], 'retained messages over CORS');
});

scenario('edge-cases', async (t) => {
  // Against a stand-in WebSocket: what the real broker cannot easily provoke.
  const sockets = [];
  class Fake {
    constructor(url) {
      this.url = url;
      this.readyState = 1;
      this.bufferedAmount = 0;
      this.sent = [];
      sockets.push(this);
      setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify({ op: 'welcome', protocol: 1, server: 'fake', session: 's', maxMessageBytes: 100, epoch: 'e' }) }));
    }
    send(frame) { this.sent.push(frame); }
    close() { this.closed = true; }
  }
  // A path resolves against the page, http becomes ws, the token goes in the query.
  const a = t.client('/ws', { WebSocket: Fake, token: 'a b' });
  await nextEvent(a, 'welcome');
  eq(sockets[0].url, `ws://${location.host}/ws?token=a+b`, 'resolved URL with the token');
  await rejectsWith(a.publish('t', 'x'.repeat(200)), 'too_large', 'past the welcome\'s maxMessageBytes (100)');
  // Listeners that close the client stop everything.
  const b = t.client('ws://fake.invalid/ws', { WebSocket: Fake, pingInterval: 20, pingTimeout: 20 });
  b.on('welcome', () => b.close());
  await until(() => b.state === 'closed', 'b closed');
  const c = t.client('ws://fake.invalid/ws', { WebSocket: Fake });
  await nextEvent(c, 'welcome');
  c.on('disconnect', () => c.close());
  sockets[sockets.length - 1].onclose({ code: 1006, reason: '' });
  eq(c.state, 'closed', 'closed from a disconnect listener');
  // No timer left that could reconnect them (white-box: a negative cannot be waited for).
  eq([b, c].map((x) => Object.values(x._timers).every((timer) => timer === 0)), [true, true], 'no timer pending after close');
  eq([b.state, c.state, sockets.length], ['closed', 'closed', 3], 'no reconnect after close');
  // The queue is bounded; close() rejects what waits in it.
  const d = t.client('ws://fake.invalid/ws', { WebSocket: Fake, connect: false, maxQueue: 1 });
  const queued = d.publish('t', 1);
  await rejectsWith(d.publish('t', 2), 'queue_full', 'past maxQueue');
  d.close();
  await rejectsWith(queued, 'closed', 'queued publish on close');
  // The browser's `online` event cuts a pending backoff short.
  const o = t.client('ws://fake.invalid/ws', { WebSocket: Fake, reconnectDelay: 60000, maxReconnectDelay: 60000 });
  await nextEvent(o, 'welcome');
  const before = sockets.length;
  sockets[before - 1].onclose({ code: 1006, reason: '' });
  eq(o.state, 'disconnected', 'waiting a minute to reconnect');
  const back = nextEvent(o, 'welcome');
  dispatchEvent(new Event('online'));
  await back;
  eq(sockets.length, before + 1, 'reconnected at once on online');
  // A malformed URL throws at construction instead of failing every reconnect.
  let threw = false;
  try { new BrokerClient('ws://[bad', { WebSocket: Fake, connect: false }); } catch (_) { threw = true; }
  assert(threw, 'malformed URL throws');
  // A handler that throws is reported and does not stop the others.
  const e = t.client('ws://fake.invalid/ws', { WebSocket: Fake });
  await nextEvent(e, 'welcome');
  const got = [];
  e.subscribe('h/#', () => { throw new Error('boom'); }, { history: 0 });
  e.subscribe('h/+', (m) => got.push(m), { history: 0 });
  const socket = sockets[sockets.length - 1];
  for (const frame of socket.sent) {
    const m = JSON.parse(frame);
    if (m.op === 'subscribe') socket.onmessage({ data: JSON.stringify({ op: 'subscribed', topic: m.topic, id: m.id }) });
  }
  await new Promise((resolve) => setTimeout(resolve)); // the subscribed replies settle (microtasks)
  socket.onmessage({ data: JSON.stringify({ op: 'message', topic: 'h/1', data: 1 }) });
  eq(got.length, 1, 'the second handler ran');
  eq(e.errors.map((x) => [x.code, x.filter]), [['handler', 'h/#']], 'the throw is an error event');
  e.errors.length = 0;
});

scenario('performance', async (t) => {
  const N = 100000;
  const captured = [];
  // A WebSocket that also keeps a sample of the frames it receives, for the CPU measurement below.
  class CapturingWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      this.addEventListener('message', (e) => { if (captured.length < 1000 && typeof e.data === 'string' && e.data.includes('"message"')) captured.push(e.data); });
    }
  }
  const p = t.client(cfg.mainDirect, { WebSocket: CapturingWebSocket });
  let count = 0;
  let first = 0;
  let last = 0;
  let sum = 0;
  const sub = p.subscribe('perf/#', (m) => {
    if (count === 0) first = performance.now();
    sum += m.data.seq;
    count += 1;
    if (count === N) last = performance.now();
  }, { history: 0 });
  await sub.ready;
  const publishing = control('perf', { topic: 'perf/a', count: N });
  await until(() => count >= N, `${N} messages`, 120000);
  const { ms } = await publishing;
  eq(sum, (N * (N + 1)) / 2, 'every message once');
  const wall = last - first;
  t.note(`end to end through broker-client.js: ${N} messages delivered to the page in ${Math.round(wall)} ms (${Math.round(N / (wall / 1000))} msg/s; publishing them in HTTP batches of 1000 took ${ms} ms)`);

  p.close(); // not subscribed any more while the baseline runs

  // The same with a bare WebSocket and JSON.parse, as a baseline for the library's share.
  const raw = new WebSocket(cfg.mainDirect);
  let rawCount = 0;
  let rawFirst = 0;
  let rawLast = 0;
  raw.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.op === 'subscribed') { raw.subscribed = true; return; }
    if (m.op !== 'message') return;
    if (rawCount === 0) rawFirst = performance.now();
    rawCount += 1;
    if (rawCount === N) rawLast = performance.now();
  };
  raw.onopen = () => raw.send(JSON.stringify({ op: 'subscribe', topic: 'perf/#', history: 0, id: 1 }));
  await until(() => raw.subscribed, 'the bare WebSocket subscribed');
  const rawPublishing = control('perf', { topic: 'perf/a', count: N });
  await until(() => rawCount >= N, `${N} messages on the bare WebSocket`, 120000);
  await rawPublishing;
  raw.close();
  t.note(`end to end, bare WebSocket + JSON.parse: ${Math.round(rawLast - rawFirst)} ms (${Math.round(N / ((rawLast - rawFirst) / 1000))} msg/s)`);

  // The client's own CPU per message: the captured frames replayed through the client's message
  // handler by a stand-in WebSocket, in a tight loop (parse, match, dedupe, call the handler).
  let fake = null;
  class FakeWebSocket {
    constructor() {
      fake = this;
      this.readyState = 1;
      this.bufferedAmount = 0;
      setTimeout(() => this.onmessage({ data: JSON.stringify({ op: 'welcome', protocol: 1, server: 'fake', session: 's', maxMessageBytes: 1 << 20, epoch: 'e' }) }));
    }
    send(frame) {
      const m = JSON.parse(frame);
      if (m.op === 'subscribe') setTimeout(() => this.onmessage({ data: JSON.stringify({ op: 'subscribed', topic: m.topic, id: m.id }) }));
    }
    close() {}
  }
  const measure = async (events, label, filters, matching = 1) => {
    const q = t.client('ws://fake.invalid/ws', { WebSocket: FakeWebSocket, pingInterval: 1e9 });
    let n = 0;
    await Promise.all(filters.map((f) => q.subscribe(f, () => { n += 1; }, { history: 0 }).ready));
    for (let i = 0; i < 20000; i++) fake.onmessage(events[i % events.length]); // warm up the JIT
    const t0 = performance.now();
    for (let i = 0; i < N; i++) fake.onmessage(events[i % events.length]);
    const us = ((performance.now() - t0) * 1000) / N;
    assert(n === (N + 20000) * matching, `${label}: every frame handled (${n})`);
    t.note(`client CPU per message, ${label}: ${us.toFixed(2)} µs (${N} frames through onmessage)`);
    q.close();
    return us;
  };
  assert(captured.length >= 100, 'frames captured');
  const text = captured.map((data) => ({ data }));
  await measure(text, `text ${captured[0].length}-byte frames like ${captured[0]}, 1 subscription`, ['perf/#']);
  await measure(text, 'text, 200 wildcard subscriptions of which 1 matches', ['perf/#', ...range(199).map((i) => `other/${i}/+`)]);
  const topic = new TextEncoder().encode('perf/a');
  const binary = range(1000).map((i) => {
    const frame = new Uint8Array(4 + topic.length + 32);
    frame.set([0x02, 0x00, 0, topic.length]);
    frame.set(topic, 4);
    frame[4 + topic.length] = i & 0xff;
    return { data: frame.buffer };
  });
  await measure(binary, 'binary 42-byte frames, 1 subscription', ['perf/#']);
  await measure(text, 'text, 200 exact subscriptions of which 1 matches', ['perf/a', ...range(199).map((i) => `other/${i}`)]);
});

// ---------------------------------------------------------------------------------------------

const list = document.getElementById('results');
const selected = scenarios.filter((s) => cfg.only.length === 0 || cfg.only.includes(s.name));
for (const { name, fn } of selected) {
  const clients = [];
  const notes = [];
  const t = {
    client(url, options = {}) {
      const client = new BrokerClient(url, { maxReconnectDelay: 1000, ...options });
      client.errors = [];
      client.on('error', (e) => client.errors.push(e));
      clients.push(client);
      return client;
    },
    note(text) { notes.push(text); },
  };
  const t0 = performance.now();
  let error = null;
  try {
    await Promise.race([fn(t), new Promise((_, reject) => setTimeout(() => reject(new Error('scenario timed out after 120 s')), 120000))]);
  } catch (e) {
    error = e;
  }
  for (const client of clients) client.close();
  try { await control('proxy', { mode: 'online' }); } catch (_) { /* reported by the runner */ }
  const ms = Math.round(performance.now() - t0);
  const item = document.createElement('li');
  item.className = error ? 'fail' : 'pass';
  item.textContent = `${error ? 'FAIL' : 'PASS'} ${name} (${ms} ms)${error ? `: ${error.message}` : ''} ${notes.join('; ')}`;
  list.append(item);
  await post('/_runner/result', { name, ok: !error, ms, error: error ? String(error.stack || error.message) : undefined, notes });
}
await post('/_runner/done', { expected: selected.length });
