// TypeScript declarations for broker-client.js (swift-broker's browser client).

/** A message delivered to a subscription. */
export interface BrokerMessage {
  /** The concrete topic name. */
  topic: string;
  /** The JSON value of a text message (undefined for a binary message). */
  data?: unknown;
  /** The journal offset, present when the message was retained. */
  offset?: number;
  /** True for messages replayed from the journal. */
  replay?: boolean;
  /** The payload of a binary message (kind 0x02); a view into the received frame. */
  binary?: Uint8Array;
}

/** The broker's first frame (PROTOCOL.md "Connecting", v1.1 fields optional). */
export interface Welcome {
  op: 'welcome';
  protocol: number;
  server: string;
  session: string;
  maxMessageBytes: number;
  epoch: string;
  client?: string;
  exp?: number;
  node?: string;
  [field: string]: unknown;
}

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface GapEvent {
  filter: string;
  /** `epoch_changed`: a new journal; `not_recovered`: retention pruned messages after `since`. */
  reason: 'epoch_changed' | 'not_recovered';
  /** The `since` the resume asked for. */
  since?: number;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  wasConnected: boolean;
}

/** An error from the broker (`code` is its error code) or from the client. */
export class BrokerError extends Error {
  constructor(code: string, message?: string, extra?: object);
  /**
   * Broker codes: `bad_request`, `unknown_op`, `invalid_topic`, `forbidden`, `too_large`,
   * `rate_limited`, `too_many_subscriptions`, `internal`, `unauthorized`, `token_expired`.
   * Client codes: `timeout`, `connection_lost`, `queue_full`, `closed`, `too_large`,
   * `bad_request`, `token`, `connect`, `bad_frame`, `handler`, `unsubscribed`.
   */
  code: string;
  /** The subscription's filter, for errors about a subscription. */
  filter?: string;
}

export interface BrokerClientOptions {
  /** A WHATWG-compatible WebSocket class (default: globalThis.WebSocket). */
  WebSocket?: { new (url: string): WebSocket } | any;
  /** A static token (JWT or client token), sent as `?token=`. */
  token?: string;
  /** Called on every connect and before each refresh; takes precedence over `token`. */
  getToken?: () => string | Promise<string>;
  /** Connect at construction (default true). */
  connect?: boolean;
  /** Milliseconds to wait for the reply to a publish, unsubscribe, ping or refresh (from when it is sent; subscribes wait as long as the connection lives). Default 10000. */
  requestTimeout?: number;
  /** Milliseconds from opening the socket to the welcome before giving up. Default 10000. */
  connectTimeout?: number;
  /** Milliseconds of silence after which a `ping` is sent. Default 20000. */
  pingInterval?: number;
  /** Milliseconds a ping may stay unanswered before the connection is dropped. Default 10000. */
  pingTimeout?: number;
  /** First reconnect delay in ms (doubling, 50-100 % jitter). Default 100. */
  reconnectDelay?: number;
  /** Largest reconnect delay in ms. Default 10000. */
  maxReconnectDelay?: number;
  /** Publishes waiting for a connection (or for the socket to drain). Default 1000. */
  maxQueue?: number;
  /** Socket `bufferedAmount` above which publishes wait in the queue. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Refresh the token this many ms before `exp` (or at half its remaining life). Default 30000. */
  refreshMargin?: number;
}

export interface SubscribeOptions {
  /** Retained messages per topic replayed first (broker default 1; 0: live only, no resume). */
  history?: number;
  /** Replay every retained message after this offset (overrides history). */
  since?: number;
  /** The epoch `since` belongs to. */
  epoch?: string;
}

export interface PublishOptions {
  /** Journal the message (default false). */
  retain?: boolean;
  /** Ask for an ack (default true). With false the promise resolves once sent. */
  ack?: boolean;
}

export interface Subscription {
  readonly filter: string;
  /** Settles with the first `subscribed` reply; rejects when the broker refuses the subscription. */
  readonly ready: Promise<{ recovered?: boolean }>;
  readonly active: boolean;
  readonly closed: boolean;
  /** The highest offset received (in `epoch`). */
  readonly lastOffset: number | undefined;
  readonly epoch: string | undefined;
  unsubscribe(): Promise<void>;
}

export interface BrokerClientEvents {
  state: ConnectionState;
  welcome: Welcome;
  gap: GapEvent;
  error: BrokerError;
  refreshed: { exp: number | null };
  disconnect: DisconnectEvent;
}

export class BrokerClient {
  constructor(url: string, options?: BrokerClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly welcome: Welcome | null;
  /** `received` messages, `duplicates` dropped by offset, `reconnects` (connection attempts after the first). */
  readonly stats: { received: number; duplicates: number; reconnects: number };
  on<E extends keyof BrokerClientEvents>(event: E, fn: (value: BrokerClientEvents[E]) => void): () => void;
  off<E extends keyof BrokerClientEvents>(event: E, fn: (value: BrokerClientEvents[E]) => void): void;
  connect(): void;
  subscribe(filter: string, handler: (message: BrokerMessage) => void, options?: SubscribeOptions): Subscription;
  publish(topic: string, data: unknown | Uint8Array | ArrayBuffer | ArrayBufferView, options?: PublishOptions): Promise<{ offset?: number }>;
  ping(): Promise<number>;
  close(): void;
}

/** Whether an MQTT-style filter (`+`, `#`) matches a topic name. */
export function topicMatches(filter: string, topic: string): boolean;
