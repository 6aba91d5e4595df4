/**
 * A reconnecting, typed client for herald's WebSocket: `connect({ url, token })`.
 *
 * It keeps one socket open to `/ws`, refreshes the token, reconnects with exponential backoff and
 * full jitter, resumes from the last processed notification (`?since=<id>`; before the first, from
 * the `position` herald sends on a socket opened with `?position=1`) where the server supports it, drops repeated notifications by id, notices dead connections with a heartbeat, and
 * exposes notifications and the connection state as Svelte-compatible stores. No dependencies: it
 * uses the global `WebSocket` (browsers, Node ≥ 22) or the constructor passed as `WebSocket`.
 *
 * @module
 */

import { NotificationName } from "./events.js";
import type { Notification, NotificationCategory, NotificationOf } from "./events.js";
import { readonly, writable } from "./store.js";
import type { Readable, Unsubscribe } from "./store.js";

/** Where the client stands. */
export type ConnectionState =
  /** No socket has opened yet: the first connection is being opened or retried. */
  | "connecting"
  /** A socket is open and receiving notifications. */
  | "open"
  /** The connection was lost; the client waits for its backoff delay or is opening a new socket. */
  | "reconnecting"
  /** The server refused the token (1008) and the token function gave no other one; the client stopped. */
  | "unauthorized"
  /** `close()` was called; the client stopped. */
  | "closed";

/**
 * A token: the JWT itself, or a function returning one. The function is called before every
 * (re)connect and ahead of the token's expiry (`exp`), so it should return a fresh token (e.g. from
 * the platform's session endpoint); it may return the same token while that one is still valid.
 */
export type TokenSource = string | (() => string | Promise<string>);

/** The part of the standard `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close", listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: "error", listener: (event: unknown) => void): void;
}

/** A `WebSocket` constructor: the browser's, Node's, or e.g. the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Everything about a notification except its `data`: `id`, `event`, `category`, `priority`, `timestamp`, .... */
export type NotificationMeta<N extends NotificationName = NotificationName> = Omit<NotificationOf<N>, "data">;

/** The notifications filed under one category. */
export type NotificationInCategory<C extends NotificationCategory> = Extract<Notification, { category: C }>;

/** What `onResync` handlers learn: the server could not prove that nothing was missed. */
export interface ResyncInfo {
  /** The id the client resumed from. */
  since: string;
  /** How many notifications the server replayed (what it still had). */
  missed: number;
}

/** Why the last socket closed, as the server said it (the `reason` JSON parsed when it is JSON). */
export interface CloseInfo {
  code: number;
  reason: string;
  /** `error_code` from a JSON reason, e.g. `QUOTA_EXCEEDED`, `TOKEN_EXPIRED`. */
  errorCode?: string;
  /** `retry_after_ms` from a JSON reason: the server asks to wait this long before reconnecting. */
  retryAfterMs?: number;
}

/** Backoff delays in milliseconds: attempt `n` waits a random time in `[0, min(maxMs, initialMs * 2^n))`. */
export interface Backoff {
  initialMs?: number;
  maxMs?: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** herald's WebSocket URL, e.g. `wss://herald.example.org/ws`. `token` and `since` are added to its query. */
  url: string;
  /** The JWT, or a function returning one (see {@link TokenSource}). */
  token: TokenSource;
  /** The WebSocket constructor; defaults to the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Resume from this notification id on the first connection (e.g. one kept in `sessionStorage`). */
  since?: string | undefined;
  /** Reconnect delays after a lost connection. Default `{ initialMs: 1000, maxMs: 30000 }`. */
  backoff?: Backoff;
  /** Reconnect delays after a quota close (4000, too many connections). Default `{ initialMs: 30000, maxMs: 300000 }`. */
  quotaBackoff?: Backoff;
  /** Heartbeat: a `{"type":"ping"}` every `intervalMs`; no frame within `timeoutMs` after one means the connection is dead. Default `{ intervalMs: 25000, timeoutMs: 10000 }`; `false` turns it off. */
  heartbeat?: { intervalMs?: number; timeoutMs?: number } | false;
  /** A socket not open after this long is abandoned and retried. Default 10000. */
  connectTimeoutMs?: number;
  /** A connection that stays open this long resets the backoff. Default 5000. */
  stableAfterMs?: number;
  /** Refresh a token this long before its `exp` (at most half its lifetime). Default 60000. */
  refreshAheadMs?: number;
  /**
   * How a refreshed token reaches the server: `"in-band"` (default) sends `{"type":"auth","token":...}`
   * on the open socket, which servers without in-band refresh ignore (they only check a token when a
   * socket opens, and the next reconnect uses the new one); `"reconnect"` opens a new socket with it.
   */
  refresh?: "in-band" | "reconnect";
  /** How many recent notification ids are remembered to drop repeats. Default 1000. */
  dedupeWindow?: number;
  /** How many notifications the `notifications` store keeps. Default 50. */
  keep?: number;
  /** Called when the server says a resume was incomplete (`recovered: false`): refresh state from the APIs. */
  onResync?: (info: ResyncInfo) => void;
  /** Where errors thrown by handlers and token functions go. Default `console.error`. */
  onError?: (error: unknown) => void;
}

/** A connected client; see {@link connect}. */
export interface HeraldClient {
  /** Calls `handler` with the `data` (exactly typed) and metadata of every `name` notification. */
  on<N extends NotificationName>(
    name: N,
    handler: (data: NotificationOf<N>["data"], meta: NotificationMeta<N>) => void,
  ): Unsubscribe;
  /** Calls `handler` with every notification. */
  onAny(handler: (notification: Notification) => void): Unsubscribe;
  /** Calls `handler` with every notification of one category. */
  onCategory<C extends NotificationCategory>(
    category: C,
    handler: (notification: NotificationInCategory<C>) => void,
  ): Unsubscribe;
  /** Calls `handler` when a resume was incomplete (`recovered: false`). */
  onResync(handler: (info: ResyncInfo) => void): Unsubscribe;
  /** The latest notifications, oldest first, at most `keep` of them (a Svelte store). */
  readonly notifications: Readable<readonly Notification[]>;
  /** The connection state (a Svelte store). */
  readonly connectionState: Readable<ConnectionState>;
  /** The current connection state. */
  readonly state: ConnectionState;
  /**
   * What the next connection resumes from: the id of the last notification processed or, before
   * the first, the position herald sent when the socket opened.
   */
  readonly lastId: string | undefined;
  /** Why the last socket closed, if one did. */
  readonly lastClose: CloseInfo | undefined;
  /** Whether the current connection's server has answered a resume (`resumed` frame). */
  readonly resumeSupported: boolean;
  /** Closes the socket and stops reconnecting. */
  close(): void;
}

const CLOSE_POLICY = 1008;
const CLOSE_QUOTA = 4000;
const OPEN = 1;

const NAMES: ReadonlySet<string> = new Set<string>(NotificationName);

/**
 * Connects to herald and keeps connecting until `close()` is called or the token is refused for
 * good. Handlers can be added at once: nothing is delivered before the socket opens.
 *
 * @example
 * const client = connect({ url: "wss://herald.example.org/ws", token: () => session.jwt() });
 * client.on("batch_file_added", (data, meta) => console.log(data.filename, meta.priority));
 */
export function connect(options: ConnectOptions): HeraldClient {
  return new Client(options);
}

type AnyHandler = (notification: Notification) => void;

class Client implements HeraldClient {
  readonly notifications: Readable<readonly Notification[]>;
  readonly connectionState: Readable<ConnectionState>;

  readonly #options: ConnectOptions;
  readonly #WebSocket: WebSocketConstructor;
  readonly #onError: (error: unknown) => void;
  readonly #handlers = new Set<AnyHandler>();
  readonly #resyncHandlers = new Set<(info: ResyncInfo) => void>();
  readonly #recent = writable<readonly Notification[]>([]);
  readonly #state = writable<ConnectionState>("connecting");
  readonly #seen = new Set<string>();
  readonly #seenOrder: string[] = [];

  #socket: WebSocketLike | undefined;
  #lastId: string | undefined;
  #lastClose: CloseInfo | undefined;
  #resumeSupported = false;
  #sinceOfSocket: string | undefined;
  #attempt = 0;
  #quotaAttempt = 0;
  #token: string | undefined;
  /** A token obtained for the next connection (after a 1008), so it is not asked for twice. */
  #nextToken: string | undefined;
  #stopped = false;
  #everOpened = false;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #lastFrameAt = 0;

  constructor(options: ConnectOptions) {
    this.#options = options;
    this.#onError = options.onError ?? ((error) => console.error("herald client:", error));
    const ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (ctor === undefined) {
      throw new Error(
        "herald client: no WebSocket constructor: this runtime has no global WebSocket (Node < 22); pass one, e.g. connect({ url, token, WebSocket }) with WebSocket from the `ws` package",
      );
    }
    this.#WebSocket = ctor;
    this.#lastId = options.since;
    this.notifications = readonly(this.#recent);
    this.connectionState = readonly(this.#state);
    if (options.onResync !== undefined) this.#resyncHandlers.add(options.onResync);
    void this.#open();
  }

  get state(): ConnectionState {
    return this.#state.get();
  }

  get lastId(): string | undefined {
    return this.#lastId;
  }

  get lastClose(): CloseInfo | undefined {
    return this.#lastClose;
  }

  get resumeSupported(): boolean {
    return this.#resumeSupported;
  }

  on<N extends NotificationName>(
    name: N,
    handler: (data: NotificationOf<N>["data"], meta: NotificationMeta<N>) => void,
  ): Unsubscribe {
    return this.#add((notification) => {
      if (notification.event !== name) return;
      const { data, ...meta } = notification;
      handler(data as NotificationOf<N>["data"], meta as NotificationMeta<N>);
    });
  }

  onAny(handler: (notification: Notification) => void): Unsubscribe {
    return this.#add(handler);
  }

  onCategory<C extends NotificationCategory>(
    category: C,
    handler: (notification: NotificationInCategory<C>) => void,
  ): Unsubscribe {
    return this.#add((notification) => {
      if (notification.category === category) handler(notification as NotificationInCategory<C>);
    });
  }

  onResync(handler: (info: ResyncInfo) => void): Unsubscribe {
    const entry = (info: ResyncInfo): void => handler(info);
    this.#resyncHandlers.add(entry);
    return () => {
      this.#resyncHandlers.delete(entry);
    };
  }

  close(): void {
    if (this.#stopped) return;
    this.#stop("closed");
  }

  #add(handler: AnyHandler): Unsubscribe {
    // A wrapper per call, so the same function added twice is called twice and removed once each.
    const entry: AnyHandler = (notification) => handler(notification);
    this.#handlers.add(entry);
    return () => {
      this.#handlers.delete(entry);
    };
  }

  #stop(state: "closed" | "unauthorized"): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    this.#stopHeartbeat();
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket !== undefined) drop(socket, 1000, "client closed");
    this.#state.set(state);
  }

  #later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#stopped) run();
    }, ms);
    this.#timers.add(timer);
  }

  /** Gets the token for the next connection; `undefined` when the token function failed. */
  async #getToken(): Promise<string | undefined> {
    const source = this.#options.token;
    if (typeof source === "string") return source;
    try {
      const token = await source();
      if (typeof token !== "string" || token === "") throw new Error("the token function returned no token");
      return token;
    } catch (error) {
      this.#onError(error);
      return undefined;
    }
  }

  async #open(): Promise<void> {
    if (this.#stopped) return;
    let token = this.#nextToken;
    this.#nextToken = undefined;
    if (token === undefined) token = await this.#getToken();
    if (this.#stopped) return;
    if (token === undefined) {
      // A token function that fails is retried with backoff: it may be a passing network error.
      this.#retry(this.#backoffDelay());
      return;
    }
    this.#token = token;
    const url = new URL(this.#options.url);
    url.searchParams.set("token", token);
    const since = this.#lastId;
    if (since !== undefined) {
      url.searchParams.set("since", since);
      url.searchParams.delete("position");
    } else {
      // herald answers with where the socket starts: the id to resume from until one is processed.
      url.searchParams.set("position", "1");
      url.searchParams.delete("since");
    }
    let socket: WebSocketLike;
    try {
      socket = new this.#WebSocket(url.toString());
    } catch (error) {
      this.#onError(error);
      this.#retry(this.#backoffDelay());
      return;
    }
    this.#socket = socket;
    this.#sinceOfSocket = since;
    this.#resumeSupported = false;
    let opened = false;
    let openedAt = 0;
    const current = (): boolean => this.#socket === socket && !this.#stopped;
    const connectTimeout = setTimeout(() => {
      if (current() && !opened) this.#lost(socket, { code: 1006, reason: "connect timeout" });
    }, this.#options.connectTimeoutMs ?? 10_000);
    this.#timers.add(connectTimeout);
    socket.addEventListener("open", () => {
      clearTimeout(connectTimeout);
      this.#timers.delete(connectTimeout);
      if (!current()) return;
      opened = true;
      openedAt = Date.now();
      this.#everOpened = true;
      this.#lastFrameAt = openedAt;
      this.#state.set("open");
      this.#startHeartbeat(socket);
      this.#scheduleRefresh(token);
      const stableAfter = this.#options.stableAfterMs ?? 5_000;
      this.#later(stableAfter, () => {
        if (current()) {
          this.#attempt = 0;
          this.#quotaAttempt = 0;
        }
      });
    });
    socket.addEventListener("message", (event) => {
      if (!current()) return;
      this.#lastFrameAt = Date.now();
      if (typeof event.data === "string") this.#frame(event.data);
    });
    socket.addEventListener("error", () => {
      // Always followed by "close", which decides what to do.
    });
    socket.addEventListener("close", (event) => {
      clearTimeout(connectTimeout);
      this.#timers.delete(connectTimeout);
      if (!current()) return;
      this.#lost(socket, { code: event.code, reason: String(event.reason ?? "") }, opened ? openedAt : undefined);
    });
  }

  #frame(text: string): void {
    const frame = readServerFrame(text);
    if (frame === undefined) return;
    if (frame.type === "position") {
      // Where this socket starts: the id to resume from until a notification is processed.
      if (this.#lastId === undefined) this.#lastId = frame.since;
      return;
    }
    if (frame.type === "resumed") {
      this.#resumeSupported = true;
      if (!frame.recovered) {
        const info: ResyncInfo = { since: this.#sinceOfSocket ?? "", missed: frame.missed };
        for (const handler of [...this.#resyncHandlers]) this.#call(() => handler(info));
      }
      return;
    }
    const { notification } = frame;
    const id = typeof notification.id === "string" ? notification.id : undefined;
    if (id !== undefined) {
      if (this.#seen.has(id)) return;
      this.#remember(id);
    }
    for (const handler of [...this.#handlers]) this.#call(() => handler(notification));
    const keep = this.#options.keep ?? 50;
    if (keep > 0) {
      const recent = this.#recent.get();
      this.#recent.set([...recent.slice(Math.max(0, recent.length - keep + 1)), notification]);
    }
    if (id !== undefined) this.#lastId = id;
  }

  #remember(id: string): void {
    const window = Math.max(1, this.#options.dedupeWindow ?? 1000);
    this.#seen.add(id);
    this.#seenOrder.push(id);
    while (this.#seenOrder.length > window) {
      const oldest = this.#seenOrder.shift();
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
  }

  #call(run: () => void): void {
    try {
      run();
    } catch (error) {
      this.#onError(error);
    }
  }

  /** The current socket ended (closed, timed out, or found dead): decide how to go on. */
  #lost(socket: WebSocketLike, close: { code: number; reason: string }, openedAt?: number): void {
    if (this.#socket !== socket) return;
    this.#socket = undefined;
    this.#stopHeartbeat();
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    drop(socket, 4000, "reconnecting");
    const info = parseClose(close.code, close.reason);
    this.#lastClose = info;
    if (openedAt !== undefined && Date.now() - openedAt >= (this.#options.stableAfterMs ?? 5_000)) {
      this.#attempt = 0;
    }
    if (info.code === CLOSE_POLICY || info.errorCode === "TOKEN_EXPIRED") {
      void this.#reauthorize(info);
      return;
    }
    this.#state.set(this.#waitingState());
    if (info.retryAfterMs !== undefined) {
      this.#retry(info.retryAfterMs);
    } else if (info.code === CLOSE_QUOTA) {
      const { initialMs = 30_000, maxMs = 300_000 } = this.#options.quotaBackoff ?? {};
      const ceiling = Math.min(maxMs, initialMs * 2 ** this.#quotaAttempt);
      this.#quotaAttempt += 1;
      // Half fixed, half jitter: never soon after a refusal, and spread across a user's tabs.
      this.#retry(ceiling / 2 + Math.random() * (ceiling / 2));
    } else {
      this.#retry(this.#backoffDelay());
    }
  }

  /** After a 1008 (or an expired token): a new token reconnects at once; none, or the same one, stops. */
  async #reauthorize(info: CloseInfo): Promise<void> {
    const refused = this.#token;
    this.#state.set(this.#waitingState());
    const token = typeof this.#options.token === "string" ? undefined : await this.#getToken();
    if (this.#stopped) return;
    if (token === undefined || (token === refused && info.errorCode !== "TOKEN_EXPIRED")) {
      this.#stop("unauthorized");
      return;
    }
    this.#nextToken = token;
    // The first new token is tried at once; a token function that keeps returning new tokens the
    // server refuses still backs off.
    if (this.#attempt === 0) {
      this.#attempt = 1;
      this.#retry(0);
    } else {
      this.#retry(this.#backoffDelay());
    }
  }

  #backoffDelay(): number {
    const { initialMs = 1_000, maxMs = 30_000 } = this.#options.backoff ?? {};
    const ceiling = Math.min(maxMs, initialMs * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return Math.random() * ceiling;
  }

  #retry(ms: number): void {
    if (this.#stopped) return;
    this.#state.set(this.#waitingState());
    this.#later(ms, () => void this.#open());
  }

  /** `connecting` until a socket has opened once, `reconnecting` after. */
  #waitingState(): "connecting" | "reconnecting" {
    return this.#everOpened ? "reconnecting" : "connecting";
  }

  #startHeartbeat(socket: WebSocketLike): void {
    this.#stopHeartbeat();
    const heartbeat = this.#options.heartbeat;
    if (heartbeat === false) return;
    const intervalMs = heartbeat?.intervalMs ?? 25_000;
    const timeoutMs = heartbeat?.timeoutMs ?? 10_000;
    this.#heartbeat = setInterval(() => {
      if (this.#socket !== socket) return;
      const sentAt = Date.now();
      try {
        socket.send('{"type":"ping"}');
      } catch {
        // A socket that cannot send is closing; its close event follows.
      }
      this.#later(timeoutMs, () => {
        if (this.#socket === socket && this.#lastFrameAt < sentAt) {
          this.#lost(socket, { code: 1006, reason: "no answer to heartbeat" });
        }
      });
    }, intervalMs);
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  /** Arms the refresh of `token` ahead of its `exp` (only for a token function; a string cannot change). */
  #scheduleRefresh(token: string): void {
    if (this.#refreshTimer !== undefined) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (typeof this.#options.token === "string") return;
    const exp = tokenExpiry(token);
    if (exp === undefined) return;
    const now = Date.now();
    const lifetime = exp - now;
    const ahead = Math.min(this.#options.refreshAheadMs ?? 60_000, Math.max(0, lifetime / 2));
    // setTimeout overflows beyond 2^31 - 1 ms; a later refresh is re-armed when it fires.
    const delay = Math.min(Math.max(0, lifetime - ahead), 2 ** 31 - 1);
    this.#refreshTimer = setTimeout(() => void this.#refresh(token), delay);
  }

  async #refresh(old: string): Promise<void> {
    const socket = this.#socket;
    if (this.#stopped || socket === undefined || socket.readyState !== OPEN) return;
    const token = await this.#getToken();
    if (this.#stopped || this.#socket !== socket) return;
    if (token === undefined || token === old) {
      // Nothing newer yet: ask again shortly, until the server closes the socket at expiry.
      this.#refreshTimer = setTimeout(() => void this.#refresh(old), 5_000);
      return;
    }
    this.#token = token;
    if ((this.#options.refresh ?? "in-band") === "in-band") {
      try {
        socket.send(JSON.stringify({ type: "auth", token }));
      } catch {
        // The socket is closing; the next connection uses the new token.
        this.#nextToken = token;
        return;
      }
      this.#scheduleRefresh(token);
    } else {
      this.#nextToken = token;
      this.#attempt = 0;
      this.#lost(socket, { code: 1000, reason: "token refreshed" });
    }
  }
}

/** A server frame the client acts on. */
export type ServerFrame =
  | { type: "position"; since: string }
  | { type: "resumed"; recovered: boolean; missed: number }
  | { type: "notification"; notification: Notification };

/**
 * Reads one text frame from herald: the `position` a socket opened without `since` starts at, a
 * `resumed` answer, a notification this package knows, or
 * `undefined` for anything else (a pong, invalid JSON, a notification name added on the server after
 * this package was built). Never throws. A `resumed` frame without a boolean `recovered` counts as
 * not recovered: the client cannot prove nothing was missed.
 */
export function readServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const frame = value as Record<string, unknown>;
  if (frame["type"] === "position") {
    const since = frame["since"];
    return typeof since === "string" ? { type: "position", since } : undefined;
  }
  if (frame["type"] === "resumed") {
    const missed = frame["missed"];
    return {
      type: "resumed",
      recovered: frame["recovered"] === true,
      missed: typeof missed === "number" && Number.isFinite(missed) && missed >= 0 ? missed : 0,
    };
  }
  const { event, data } = frame;
  if (typeof event !== "string" || !NAMES.has(event)) return undefined;
  if (typeof data !== "object" || data === null || Array.isArray(data)) return undefined;
  return { type: "notification", notification: frame as unknown as Notification };
}

/** Closes a socket the client no longer listens to, without waiting for the server. */
function drop(socket: WebSocketLike, code: number, reason: string): void {
  try {
    const terminate = (socket as { terminate?: () => void }).terminate;
    if (typeof terminate === "function") terminate.call(socket);
    else socket.close(code, reason);
  } catch {
    // Already closed.
  }
}

/** Reads a close reason; herald sends `{"error_code": ..., "message": ..., "retry_after_ms"?: ...}`. */
export function parseClose(code: number, reason: string): CloseInfo {
  const info: CloseInfo = { code, reason };
  try {
    const value: unknown = JSON.parse(reason);
    if (typeof value === "object" && value !== null) {
      const { error_code: errorCode, retry_after_ms: retryAfterMs } = value as Record<string, unknown>;
      if (typeof errorCode === "string") info.errorCode = errorCode;
      if (typeof retryAfterMs === "number" && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
        info.retryAfterMs = retryAfterMs;
      }
    }
  } catch {
    // Not JSON: only the code speaks.
  }
  return info;
}

/** The `exp` of a JWT in Unix milliseconds, read without verifying; `undefined` when it has none. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims !== "object" || claims === null) return undefined;
    const exp = (claims as Record<string, unknown>)["exp"];
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
