// broker-client.js: a dependency-free client of swift-broker for browsers (and any WHATWG WebSocket).
// Wire contract: PROTOCOL.md v1 + v1.1. Resume logic follows Sources/BrokerClient/ResumeState.swift.
// One ES module; see Clients/js/README.md for the behaviour and the limits.

const OPEN = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const DEFAULTS = {
  requestTimeout: 10000,
  connectTimeout: 10000,
  pingInterval: 20000,
  pingTimeout: 10000,
  reconnectDelay: 100,
  maxReconnectDelay: 10000,
  maxQueue: 1000,
  maxBufferedBytes: 1 << 20,
  refreshMargin: 30000,
};

/** An error from the broker (`code` is the protocol's error code) or from the client itself. */
export class BrokerError extends Error {
  /**
   * @param {string} code e.g. `forbidden`, `rate_limited`, `timeout`, `connection_lost`, `queue_full`
   * @param {string} [message]
   * @param {object} [extra] fields copied onto the error (`filter`, `topic`...)
   */
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'BrokerError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** Whether `filter` (MQTT-style, `+` and `#`) matches the topic name `topic`. */
export function topicMatches(filter, topic) {
  if (filter === topic) return true;
  if (filter.indexOf('+') < 0 && filter.indexOf('#') < 0) return false;
  return matchLevels(filter.split('/'), topic);
}

function matchLevels(f, topic, t = topic.split('/')) {
  // A filter starting with a wildcard never matches a `$` topic (MQTT rule, PROTOCOL.md "Topics").
  if (topic.charCodeAt(0) === 36 && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true; // `#` is always the last level and matches zero or more
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * A subscription made with {@link BrokerClient#subscribe}. It lives across reconnects until
 * `unsubscribe()`, `client.close()`, or the broker refusing it.
 */
class Subscription {
  constructor(client, entry) {
    this._client = client;
    this._entry = entry;
    /** The filter subscribed to. */
    this.filter = entry.filter;
    /**
     * Settles with the first `subscribed` reply (`{ recovered? }`), or rejects with a
     * {@link BrokerError} when the broker refuses the subscription (`forbidden`, `invalid_topic`,
     * `too_many_subscriptions`...). Rejections are also reported on the client's `error` event.
     * @type {Promise<{recovered?: boolean}>}
     */
    this.ready = entry.ready;
  }
  /** Whether the broker has confirmed the subscription on the current connection. */
  get active() { return this._entry.active; }
  /** Whether the subscription has ended (unsubscribed, refused, client closed). */
  get closed() { return this._entry.closed; }
  /** The highest offset received, or undefined (in the epoch `epoch`). */
  get lastOffset() { return this._entry.lastOffset; }
  /** The journal epoch `lastOffset` belongs to. */
  get epoch() { return this._entry.epoch; }
  /** Ends the subscription. Resolves when the broker confirms (at once when offline). */
  unsubscribe() { return this._client._unsubscribe(this._entry); }
}

/**
 * A client of swift-broker over one WebSocket.
 *
 * It connects at construction, reconnects with exponential backoff and jitter, resumes retained
 * subscriptions with `since`/`epoch` (no loss, no duplicate), probes the connection with the
 * protocol's `ping` op, refreshes JWTs before they expire, and queues publishes while offline.
 *
 * Events (`on(name, fn)`): `state` (`'connecting' | 'connected' | 'disconnected' | 'closed'`),
 * `welcome` (the broker's welcome object), `gap` (`{ filter, reason, since }`), `error`
 * (a {@link BrokerError}), `refreshed` (`{ exp }`), `disconnect` (`{ code, reason }`).
 */
export class BrokerClient {
  /**
   * @param {string} url `ws://host:port/ws`, `wss://...`, or a path such as `/ws` (resolved
   *   against the page's location).
   * @param {object} [options] see broker-client.d.ts (`BrokerClientOptions`) for every option.
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = Object.assign({}, DEFAULTS, options);
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this._WebSocket) throw new Error('no WebSocket implementation: pass options.WebSocket');
    this._resolveUrl(undefined); // a malformed URL throws here, not on every reconnect
    this._token = options.token;
    this._getToken = options.getToken;
    this._listeners = new Map();
    this._state = 'disconnected';
    this._ws = null;
    this._welcome = null;
    this._connected = false;
    this._closed = false;
    this._opening = false; // between _open() and the socket (getToken may take a while)
    this._attempt = 0;
    this._generation = 0;
    this._timers = { reconnect: 0, connect: 0, keepalive: 0, refresh: 0, flush: 0 };
    this._rx = 0; // frames received on the current connection (the keepalive compares it)
    this._subs = new Map(); // local id -> subscription entry, in creation order
    this._exact = new Map(); // filter without wildcards -> Set of entries (delivery index)
    this._wild = new Set(); // entries whose filter has + or #
    this._nextSub = 0;
    this._pending = new Map(); // request id -> { resolve, reject, timer, sent }
    this._queue = []; // frames waiting for a connection or for the socket to drain
    this._nextId = 0;
    /** Counters: `received` messages, `duplicates` dropped by offset, `reconnects` (attempts after the first). */
    this.stats = { received: 0, duplicates: 0, reconnects: 0 };
    // When the browser says the network is back, retry now instead of at the end of the backoff.
    this._onOnline = () => {
      if (this._closed || !this._timers.reconnect) return;
      this._clearTimer('reconnect');
      this.stats.reconnects++;
      this._open();
    };
    if (typeof globalThis.addEventListener === 'function') globalThis.addEventListener('online', this._onOnline);
    // Deferred so that listeners added right after construction see 'connecting'.
    if (options.connect !== false) queueMicrotask(() => this.connect());
  }

  /** The current state: `'connecting' | 'connected' | 'disconnected' | 'closed'`. */
  get state() { return this._state; }
  /** The welcome of the current (or last) connection, or null. */
  get welcome() { return this._welcome; }

  /**
   * Adds an event listener; returns a function that removes it.
   * @param {'state'|'welcome'|'gap'|'error'|'refreshed'|'disconnect'} event
   * @param {(value: any) => void} fn
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** Removes an event listener. */
  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  /** Starts connecting (done by the constructor unless `connect: false`). */
  connect() {
    if (this._closed || this._ws || this._opening || this._timers.reconnect) return;
    this._open();
  }

  /**
   * Subscribes to a topic filter. The handler gets `{ topic, data, offset?, replay?, binary? }`
   * (`binary`: the payload of a binary message as a Uint8Array, `data` then undefined).
   * @param {string} filter e.g. `dash/#`
   * @param {(msg: object) => void} handler
   * @param {{history?: number, since?: number, epoch?: string}} [options] `history`: retained
   *   messages per topic replayed first (broker default 1; 0 = live only, and then no resume);
   *   `since`/`epoch`: start after this offset of this journal epoch.
   * @returns {Subscription}
   */
  subscribe(filter, handler, options = {}) {
    if (typeof filter !== 'string' || filter.length === 0) throw new BrokerError('invalid_topic', 'filter must be a non-empty string');
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    const { history, since, epoch } = options;
    if (history !== undefined && !(Number.isInteger(history) && history >= 0)) throw new RangeError('history must be an integer >= 0');
    if (since !== undefined && !(Number.isInteger(since) && since >= 0)) throw new RangeError('since must be an integer >= 0');
    const wild = filter.indexOf('+') >= 0 || filter.indexOf('#') >= 0;
    const entry = {
      id: ++this._nextSub, filter, handler, history, wild,
      levels: wild ? filter.split('/') : null,
      wantsRetained: since !== undefined || (history === undefined ? 1 : history) > 0,
      initialSince: since, requestedEpoch: epoch,
      epoch: undefined, lastOffset: undefined, topicOffsets: new Map(),
      active: false, closed: false, everSent: false, firstReply: true, gapReason: undefined, sentSince: undefined,
    };
    entry.ready = new Promise((resolve, reject) => { entry.resolveReady = resolve; entry.rejectReady = reject; });
    entry.ready.catch(() => {}); // reported on `error` too; no unhandled rejection if ignored
    if (this._closed) {
      entry.closed = true;
      entry.rejectReady(new BrokerError('closed', 'client is closed'));
    } else {
      this._subs.set(entry.id, entry);
      if (wild) this._wild.add(entry);
      else {
        let set = this._exact.get(filter);
        if (!set) this._exact.set(filter, (set = new Set()));
        set.add(entry);
      }
      if (this._connected) this._sendSubscribe(entry);
    }
    return new Subscription(this, entry);
  }

  /**
   * Publishes a message. `data` is any JSON value (a text frame), or a Uint8Array / ArrayBuffer /
   * typed array (a binary frame). Resolves with `{ offset? }` (offset when retained) on the
   * broker's ack; rejects with a {@link BrokerError} (`forbidden`, `invalid_topic`,
   * `rate_limited`, `too_large`, `timeout`, `connection_lost`, `queue_full`, `closed`...).
   * While not connected the publish waits in a bounded queue (`maxQueue`).
   * @param {string} topic
   * @param {any} data
   * @param {{retain?: boolean, ack?: boolean}} [options] `ack: false`: no ack asked, resolves
   *   with `{}` once handed to the socket.
   * @returns {Promise<{offset?: number}>}
   */
  publish(topic, data, options = {}) {
    if (this._closed) return Promise.reject(new BrokerError('closed', 'client is closed'));
    if (typeof topic !== 'string' || topic.length === 0) return Promise.reject(new BrokerError('invalid_topic', 'topic must be a non-empty string'));
    const retain = options.retain === true;
    const id = options.ack === false ? undefined : this._newId();
    let frame;
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      const payload = data instanceof Uint8Array ? data
        : data instanceof ArrayBuffer ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const t = encoder.encode(topic);
      if (t.length > 0xffff) return Promise.reject(new BrokerError('invalid_topic', 'topic too long'));
      const head = 4 + t.length + (id === undefined ? 0 : 4);
      frame = new Uint8Array(head + payload.length);
      frame[0] = 0x01;
      frame[1] = (retain ? 1 : 0) | (id === undefined ? 0 : 2);
      frame[2] = t.length >> 8;
      frame[3] = t.length & 0xff;
      frame.set(t, 4);
      if (id !== undefined) new DataView(frame.buffer).setUint32(4 + t.length, id);
      frame.set(payload, head);
    } else {
      if (data === undefined) return Promise.reject(new BrokerError('bad_request', 'data is undefined (not JSON)'));
      const message = { op: 'publish', topic, data };
      if (retain) message.retain = true;
      if (id !== undefined) message.id = id;
      try { frame = JSON.stringify(message); } catch (e) { return Promise.reject(new BrokerError('bad_request', `data is not JSON: ${e.message}`)); }
    }
    const max = this._welcome && this._welcome.maxMessageBytes;
    // Larger than maxMessageBytes would close the connection (1009): refuse it here instead.
    if (max && tooLarge(frame, max)) return Promise.reject(new BrokerError('too_large', `message exceeds maxMessageBytes (${max})`));
    return this._request(frame, id, true);
  }

  /**
   * Sends the protocol's `ping` op; resolves with the round trip in milliseconds.
   * @returns {Promise<number>}
   */
  ping() {
    const start = now();
    return this._control({ op: 'ping' }).then(() => now() - start);
  }

  /**
   * Closes the connection (1000) for good: no reconnect; pending and queued requests reject with
   * `closed`.
   */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._opening = false;
    this._connected = false;
    if (typeof globalThis.removeEventListener === 'function') globalThis.removeEventListener('online', this._onOnline);
    for (const key of Object.keys(this._timers)) this._clearTimer(key);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      detach(ws);
      try { ws.close(1000); } catch (_) { /* already closing */ }
    }
    this._failPending(() => true, 'closed', 'client is closed');
    this._queue.length = 0;
    for (const entry of this._subs.values()) {
      entry.closed = true;
      entry.active = false;
      if (entry.firstReply) entry.rejectReady(new BrokerError('closed', 'client is closed'));
    }
    this._subs.clear();
    this._exact.clear();
    this._wild.clear();
    this._setState('closed');
  }

  // ---- connection ------------------------------------------------------------------------------

  async _open() {
    const generation = ++this._generation;
    this._opening = true;
    this._setState('connecting');
    // getToken, the TCP connect and the upgrade can all stall (a black-holed network): give up
    // when no welcome came within connectTimeout.
    this._setTimer('connect', () => {
      if (this._ws) { this._abandon(this._ws, 'no welcome within connectTimeout'); return; }
      this._generation++;
      this._opening = false;
      this._emitError(new BrokerError('token', 'getToken did not answer within connectTimeout'));
      this._scheduleReconnect();
    }, this.options.connectTimeout);
    let token = this._token;
    if (this._getToken) {
      try {
        token = await this._getToken();
      } catch (e) {
        if (generation !== this._generation || this._closed) return;
        this._opening = false;
        this._clearTimer('connect');
        this._emitError(new BrokerError('token', `getToken failed: ${e && e.message}`, { cause: e }));
        this._scheduleReconnect();
        return;
      }
      if (generation !== this._generation || this._closed) return;
    }
    this._opening = false;
    let ws;
    try {
      ws = new this._WebSocket(this._resolveUrl(token));
    } catch (e) {
      this._clearTimer('connect');
      this._emitError(new BrokerError('connect', `cannot open WebSocket: ${e && e.message}`, { cause: e }));
      this._scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._rx = 0;
    ws.onmessage = (event) => { if (ws === this._ws) this._onFrame(event.data); };
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    ws.onerror = () => {}; // a close event follows, which is where we act
  }

  _resolveUrl(token) {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const url = new URL(this.url, base);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    // Browsers cannot set headers on a WebSocket: the token goes in the query (PROTOCOL.md v1.1).
    if (token) url.searchParams.set('token', token);
    return url.toString();
  }

  // Drops a connection that looks dead without waiting for the browser to notice (which, on a
  // black-holed TCP connection, can take minutes).
  _abandon(ws, reason) {
    if (!ws || ws !== this._ws) return;
    detach(ws);
    try { ws.close(1000); } catch (_) { /* ignore */ }
    this._onClose(ws, 1006, reason);
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    const wasConnected = this._connected;
    this._connected = false;
    this._clearTimer('connect');
    this._clearTimer('keepalive');
    this._clearTimer('refresh');
    this._clearTimer('flush');
    // Requests already sent may or may not have been processed: they fail; queued ones wait.
    this._failPending((p) => p.sent, 'connection_lost', `connection lost (${code}${reason ? ` ${reason}` : ''})`);
    for (const entry of this._subs.values()) entry.active = false;
    if (this._closed) return;
    this._emit('disconnect', { code, reason, wasConnected });
    if (this._closed) return; // a listener closed the client
    if (code === 1008 && /token expired/i.test(reason || '')) this._tokenExpired = true;
    if (this._tokenExpired && !this._getToken) {
      // The same static token would be refused (401) on every reconnect: stop.
      this._emitError(new BrokerError('token_expired', 'token expired and no getToken to renew it; client closed'));
      this.close();
      return;
    }
    this._tokenExpired = false;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this._setState('disconnected');
    if (this._closed) return; // a state listener closed the client
    const o = this.options;
    const base = Math.min(o.maxReconnectDelay, o.reconnectDelay * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    // Jitter: 50-100 % of the base, so clients cut off together do not return together.
    const delay = base * (0.5 + Math.random() * 0.5);
    this._setTimer('reconnect', () => { this._timers.reconnect = 0; this.stats.reconnects++; this._open(); }, delay);
  }

  _onWelcome(welcome) {
    this._clearTimer('connect');
    this._welcome = welcome;
    this._connected = true;
    this._attempt = 0;
    this._setState('connected');
    if (this._closed) return;
    this._emit('welcome', welcome);
    if (this._closed) return; // a listener closed the client
    // Subscriptions first (in creation order), then what was queued.
    for (const entry of this._subs.values()) this._sendSubscribe(entry);
    this._flush();
    this._armKeepalive();
    this._scheduleRefresh(welcome.exp);
  }

  _onFrame(data) {
    this._rx++;
    if (typeof data === 'string') {
      let m;
      try { m = JSON.parse(data); } catch (_) {
        this._emitError(new BrokerError('bad_frame', 'a text frame from the broker is not JSON'));
        return;
      }
      if (!this._connected) {
        if (m && m.op === 'welcome') this._onWelcome(m);
        else this._abandon(this._ws, 'first frame is not a welcome');
        return;
      }
      this._onControl(m);
    } else if (this._connected) {
      this._onBinary(data);
    }
  }

  _onControl(m) {
    switch (m.op) {
      case 'message':
        this._deliver(m.topic, m.data, m.offset, m.replay === true, undefined);
        return;
      case 'ack':
        this._settle(m.id, m.offset === undefined ? {} : { offset: m.offset });
        return;
      case 'pong':
      case 'unsubscribed':
        if (m.id !== undefined) this._settle(m.id, m);
        else if (m.op === 'unsubscribed') this._ended(m.topic, m.reason);
        return;
      case 'refreshed':
        this._settle(m.id, m);
        return;
      case 'subscribed':
        this._settle(m.id, m);
        return;
      case 'error': {
        const error = new BrokerError(m.code, m.message);
        if (m.id !== undefined && this._pending.has(m.id)) {
          this._fail(m.id, error);
        } else {
          if (m.code === 'token_expired') this._tokenExpired = true;
          this._emitError(error);
        }
        return;
      }
      case 'welcome':
        return; // a second welcome means nothing
      default:
        return; // ops added later are ignored (additive protocol changes)
    }
  }

  _onBinary(data) {
    const u8 = data instanceof ArrayBuffer ? new Uint8Array(data)
      : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
    if (!u8 || u8.length < 4 || u8[0] !== 0x02) {
      this._emitError(new BrokerError('bad_frame', 'a binary frame from the broker is not a message (kind 0x02)'));
      return;
    }
    const flags = u8[1];
    const length = (u8[2] << 8) | u8[3];
    let p = 4 + length;
    let offset;
    if (flags & 1) {
      if (u8.length < p + 8) { this._emitError(new BrokerError('bad_frame', 'binary message too short')); return; }
      const view = new DataView(u8.buffer, u8.byteOffset);
      offset = view.getUint32(p) * 4294967296 + view.getUint32(p + 4);
      p += 8;
    } else if (u8.length < p) {
      this._emitError(new BrokerError('bad_frame', 'binary message too short'));
      return;
    }
    const topic = decoder.decode(u8.subarray(4, 4 + length));
    this._deliver(topic, undefined, offset, (flags & 2) !== 0, u8.subarray(p));
  }

  // Hands a message to every local subscription that matches (the broker sends one copy per
  // connection, whatever the number of matching filters).
  _deliver(topic, data, offset, replay, binary) {
    this.stats.received++;
    let message = null;
    // Exact filters by a map lookup; wildcard filters one by one, with the topic split once.
    const exact = this._exact.get(topic);
    if (exact) for (const entry of exact) message = this._offer(entry, topic, data, offset, replay, binary, message);
    if (this._wild.size > 0) {
      const levels = topic.split('/');
      for (const entry of this._wild) {
        if (matchLevels(entry.levels, topic, levels)) message = this._offer(entry, topic, data, offset, replay, binary, message);
      }
    }
  }

  // Hands a message to one matching subscription; returns the (shared) message object.
  _offer(entry, topic, data, offset, replay, binary, message) {
    // Only after its own `subscribed` (which the broker sends before its replay): what arrives
    // earlier was sent for another subscription, and could put a later offset ahead of this
    // one's replay.
    if (!entry.active) return message;
    if (replay && !entry.wantsRetained) return message;
    if (offset !== undefined) {
      // Offsets grow strictly per topic: one not above the last seen is a duplicate (defence
      // against overlapping replays; the resume itself should not produce any).
      const last = entry.topicOffsets.get(topic);
      if (last !== undefined && offset <= last) { this.stats.duplicates++; return message; }
      entry.topicOffsets.set(topic, offset);
      if (entry.lastOffset === undefined || offset > entry.lastOffset) entry.lastOffset = offset;
    }
    if (!message) {
      message = { topic, data, offset, replay };
      if (binary) message.binary = binary;
    }
    try { entry.handler(message); } catch (e) { this._emitError(new BrokerError('handler', `subscription handler threw: ${e && e.message}`, { cause: e, filter: entry.filter })); }
    return message;
  }

  // ---- subscriptions ---------------------------------------------------------------------------

  _sendSubscribe(entry) {
    const epoch = this._welcome && this._welcome.epoch ? this._welcome.epoch : undefined;
    const request = { op: 'subscribe', topic: entry.filter };
    if (entry.history !== undefined) request.history = entry.history;
    const resume = entry.everSent && (entry.active || entry.lastOffset !== undefined || entry.resumable);
    if (!resume) {
      // First subscribe (or one whose reply never came, with nothing received yet).
      if (entry.initialSince !== undefined) {
        request.since = entry.initialSince;
        if (entry.requestedEpoch) request.epoch = entry.requestedEpoch;
        if (entry.requestedEpoch && epoch && entry.requestedEpoch !== epoch) {
          entry.gapReason = 'epoch_changed';
          entry.initialSince = undefined; // an offset of another journal: never resume from it
        }
      }
      entry.epoch = epoch;
    } else if (entry.wantsRetained) {
      // Resume after the last offset seen (or since 0 in the subscribe's epoch: everything
      // retained since then is new to us), naming the epoch those offsets belong to.
      let since = entry.lastOffset !== undefined ? entry.lastOffset : 0;
      if (entry.initialSince !== undefined && entry.initialSince > since) since = entry.initialSince;
      request.since = since;
      if (entry.epoch) request.epoch = entry.epoch;
      if (epoch && entry.epoch && epoch !== entry.epoch) {
        // A new journal: old offsets mean nothing. The broker answers recovered:false and
        // replays the current state as `history` says.
        entry.gapReason = 'epoch_changed';
        entry.topicOffsets.clear();
        entry.lastOffset = undefined;
        entry.initialSince = undefined;
      }
      if (epoch) entry.epoch = epoch;
    }
    entry.everSent = true;
    entry.resumable = entry.resumable || entry.active;
    entry.sentSince = request.since;
    // No timeout: a subscription is state, confirmed when the broker gets to it (its reply can
    // queue behind a large replay); a dead connection is the keepalive's business.
    this._control(request, false).then((reply) => {
      if (entry.closed) return;
      entry.active = true;
      entry.resumable = true;
      const gapReason = entry.gapReason;
      entry.gapReason = undefined;
      if (entry.firstReply) {
        entry.firstReply = false;
        entry.resolveReady(reply.recovered === undefined ? {} : { recovered: reply.recovered });
      }
      if (reply.recovered === false) this._emit('gap', { filter: entry.filter, reason: gapReason || 'not_recovered', since: entry.sentSince });
    }, (error) => {
      if (entry.closed || error.code === 'connection_lost' || error.code === 'closed') return; // resent on reconnect
      // The broker refused it: the subscription ends.
      error.filter = entry.filter;
      this._endEntry(entry, error);
    });
  }

  _unsubscribe(entry) {
    if (entry.closed) return Promise.resolve();
    this._removeEntry(entry);
    if (entry.firstReply) { entry.firstReply = false; entry.rejectReady(new BrokerError('unsubscribed', 'unsubscribed before the broker confirmed')); }
    // Another local subscription to the same filter keeps the broker's subscription.
    for (const other of this._subs.values()) if (other.filter === entry.filter) return Promise.resolve();
    if (!this._connected) return Promise.resolve();
    return this._control({ op: 'unsubscribe', topic: entry.filter }).then(() => undefined, (error) => {
      if (error.code === 'connection_lost' || error.code === 'closed') return; // gone with the connection
      throw error;
    });
  }

  _removeEntry(entry) {
    entry.closed = true;
    entry.active = false;
    this._subs.delete(entry.id);
    if (entry.wild) this._wild.delete(entry);
    else {
      const set = this._exact.get(entry.filter);
      if (set) { set.delete(entry); if (set.size === 0) this._exact.delete(entry.filter); }
    }
  }

  // The broker ended subscriptions on its own (a refreshed token no longer covers them).
  _ended(filter, reason) {
    for (const entry of [...this._subs.values()]) {
      if (entry.filter !== filter) continue;
      this._endEntry(entry, new BrokerError(reason || 'unsubscribed', `the broker ended the subscription to ${filter}`, { filter }));
    }
  }

  _endEntry(entry, error) {
    this._removeEntry(entry);
    if (entry.firstReply) { entry.firstReply = false; entry.rejectReady(error); }
    this._emitError(error);
  }

  // ---- requests --------------------------------------------------------------------------------

  _newId() {
    // uint32 for binary publishes' ack ids; the same counter for JSON requests.
    this._nextId = this._nextId >= 0xffffffff ? 1 : this._nextId + 1;
    return this._nextId;
  }

  // A control request sent only on an open connection (subscribe, unsubscribe, ping, refresh).
  _control(message, timed = true) {
    if (!this._connected) return Promise.reject(new BrokerError(this._closed ? 'closed' : 'connection_lost', 'not connected'));
    message.id = this._newId();
    return this._request(JSON.stringify(message), message.id, false, timed);
  }

  _request(frame, id, queueable, timed = true) {
    return new Promise((resolve, reject) => {
      const pending = { resolve, reject, timer: 0, sent: false, timed };
      const canSend = this._connected && this._queue.length === 0 && this._ws.bufferedAmount < this.options.maxBufferedBytes;
      if (!canSend && queueable) {
        if (this._queue.length >= this.options.maxQueue) {
          reject(new BrokerError('queue_full', `outgoing queue full (${this.options.maxQueue} messages)`));
          return;
        }
        this._queue.push({ frame, id, pending });
        if (id !== undefined) this._pending.set(id, pending);
        if (this._connected) this._scheduleFlush();
        return;
      }
      if (id !== undefined) this._pending.set(id, pending);
      this._transmit(frame, id, pending);
    });
  }

  _transmit(frame, id, pending) {
    try {
      this._ws.send(frame);
    } catch (e) {
      if (id !== undefined) this._pending.delete(id);
      pending.reject(new BrokerError('connection_lost', `send failed: ${e && e.message}`));
      return;
    }
    pending.sent = true;
    if (id === undefined) { pending.resolve({}); return; }
    if (!pending.timed) return;
    pending.timer = setTimeout(() => {
      if (this._pending.get(id) !== pending) return;
      this._pending.delete(id);
      pending.reject(new BrokerError('timeout', `no reply within ${this.options.requestTimeout} ms`));
    }, this.options.requestTimeout);
  }

  // Sends queued frames while the socket's own buffer stays under maxBufferedBytes.
  _flush() {
    this._clearTimer('flush');
    while (this._connected && this._queue.length > 0 && this._ws.bufferedAmount < this.options.maxBufferedBytes) {
      const item = this._queue.shift();
      if (item.id !== undefined && this._pending.get(item.id) !== item.pending) continue; // settled meanwhile
      this._transmit(item.frame, item.id, item.pending);
    }
    if (this._connected && this._queue.length > 0) this._scheduleFlush();
  }

  _scheduleFlush() {
    // WebSocket has no "drained" event: poll bufferedAmount.
    if (!this._timers.flush) this._setTimer('flush', () => { this._timers.flush = 0; this._flush(); }, 20);
  }

  _settle(id, value) {
    const pending = id === undefined ? undefined : this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve(value);
  }

  _fail(id, error) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    pending.reject(error);
  }

  _failPending(predicate, code, message) {
    for (const [id, pending] of [...this._pending]) {
      if (!predicate(pending)) continue;
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new BrokerError(code, message));
    }
    if (code === 'closed') {
      for (const item of this._queue) if (item.id === undefined) item.pending.reject(new BrokerError(code, message));
    }
  }

  // ---- keepalive and token refresh -------------------------------------------------------------

  // Every pingInterval: if nothing arrived since the last check, send `ping` and give the broker
  // pingTimeout to answer with anything; silence means a dead connection.
  _armKeepalive() {
    const ws = this._ws;
    if (!ws) return;
    let seen = this._rx;
    const check = () => {
      if (ws !== this._ws) return;
      if (this._rx !== seen) { seen = this._rx; this._setTimer('keepalive', check, this.options.pingInterval); return; }
      this._control({ op: 'ping' }).catch(() => {});
      this._setTimer('keepalive', () => {
        if (ws !== this._ws) return;
        if (this._rx === seen) this._abandon(ws, `no answer to ping within ${this.options.pingTimeout} ms`);
        else { seen = this._rx; this._setTimer('keepalive', check, this.options.pingInterval); }
      }, this.options.pingTimeout);
    };
    this._setTimer('keepalive', check, this.options.pingInterval);
  }

  _scheduleRefresh(exp) {
    this._clearTimer('refresh');
    if (!this._getToken || typeof exp !== 'number') return;
    const remaining = exp * 1000 - Date.now();
    // refreshMargin before exp; half the time left when that is less than twice the margin.
    const margin = this.options.refreshMargin;
    const wait = Math.max(500, remaining > 2 * margin ? remaining - margin : remaining / 2);
    const ws = this._ws;
    this._setTimer('refresh', () => this._refresh(ws, exp), wait);
  }

  async _refresh(ws, exp) {
    this._timers.refresh = 0;
    if (ws !== this._ws) return;
    try {
      const token = await this._getToken();
      if (ws !== this._ws) return;
      const reply = await this._control({ op: 'refresh', token });
      if (ws !== this._ws) return;
      this._emit('refreshed', { exp: reply.exp });
      this._scheduleRefresh(reply.exp);
    } catch (e) {
      if (ws !== this._ws) return;
      this._emitError(e instanceof BrokerError ? e : new BrokerError('token', `getToken failed: ${e && e.message}`, { cause: e }));
      // Try again while the old token is valid; past exp the broker closes (1008) and we
      // reconnect with a fresh token.
      const left = exp * 1000 - Date.now();
      if (left > 1000) this._setTimer('refresh', () => this._refresh(ws, exp), Math.min(5000, left / 2));
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit('state', state);
  }

  _emit(event, value) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const fn of [...set]) {
      try { fn(value); } catch (e) { console.error('broker-client: listener threw', e); }
    }
    return true;
  }

  _emitError(error) {
    if (!this._emit('error', error)) console.warn('broker-client:', error.code, error.message);
  }

  _setTimer(name, fn, ms) {
    clearTimeout(this._timers[name]);
    this._timers[name] = setTimeout(fn, ms);
  }

  _clearTimer(name) {
    clearTimeout(this._timers[name]);
    this._timers[name] = 0;
  }
}

function detach(ws) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
  ws.onopen = null;
}

function tooLarge(frame, max) {
  if (typeof frame !== 'string') return frame.length > max;
  // Encode only when it could matter: UTF-8 takes 1 to 3 bytes per UTF-16 unit.
  if (frame.length * 3 <= max) return false;
  if (frame.length > max) return true;
  return encoder.encode(frame).length > max;
}

function now() {
  return globalThis.performance ? performance.now() : Date.now();
}
