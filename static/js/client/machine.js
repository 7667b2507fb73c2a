/**
 * The connection state machine of the Scoreboard browser client, as one pure function:
 *
 *     transition(model, event, { random }) -> { model, effects }
 *
 * It never touches a socket, a timer or the network. It says what should happen next as a
 * list of effects, which scoreboard-client.js carries out; the timers and I/O it starts come
 * back later as events. That keeps every rule (backoff, failure counting, the polling
 * fallback, close codes, heartbeats) testable in Node without fakes.
 *
 * States shown to the page:
 *   connecting    the very first attempt, before anything has succeeded
 *   live          a WebSocket is up (its `connection_status` arrived)
 *   reconnecting  waiting before the next attempt (retry timer armed), or an attempt in flight
 *   polling       the long-poll fallback is answering
 *   offline       stopped: `reason` is "auth", "forbidden", "not_found" or "closed"
 *
 * Two transports: in mode "ws" the client reconnects the WebSocket with full-jitter backoff;
 * after FAILURES_BEFORE_POLLING consecutive failed attempts (or from the start, when the
 * browser has no WebSocket) it switches to mode "poll": it long-polls `/updates` and, when a
 * WebSocket exists, retries it in the background on its own slower schedule. The first
 * background attempt that gets its `connection_status` ends polling and the client is live.
 *
 * Events (`{type, ...}`):
 *   start                      connect() was called
 *   socket_ready {heartbeatIntervalS?}  the current socket's first `connection_status`
 *   socket_closed {code}       the current socket closed or failed (1006 for errors)
 *   connect_timeout            no `connection_status` within CONNECT_TIMEOUT_MS
 *   pong_timeout               no `pong` within 10 s of a `ping`
 *   stable_timer               the connection has been live for a minute
 *   retry_timer                the backoff wait ended
 *   background_timer           the wait before a background WebSocket attempt ended
 *   poll_ok                    a long-poll answered 200
 *   poll_failed {status, retryAfterS?}  a long-poll failed (status 0: network or timeout)
 *   auth_expired               an `error` frame said the token expired or is refused
 *   board_gone                 an `error` frame said the board does not exist (any more)
 *   retry_now                  the page's "retry" button, or the browser came back online
 *   close                      the page closed the client
 *
 * Effects (`{type, ...}`):
 *   open_socket {reconnect}    resolve the token, open a WebSocket (`&reconnect=1` if set)
 *   close_socket {code, reason}  close and forget the current socket
 *   start_heartbeat {intervalMs} / stop_heartbeat
 *   start_timer {timer, ms} / cancel_timer {timer}   timer: connect | retry | background | stable
 *   poll {waitS}               one long-poll request with `timeout=waitS`
 *   abort_poll                 abort the poll in flight
 *   flush_submissions {via}    send waiting submissions: via "socket" or "http"
 *   fail_submissions {reason}  reject every waiting submission (the client stopped)
 *   auth_expired               call the page's onAuthExpired
 */

import { backgroundDelayMs, backoffDelayMs, STABLE_AFTER_MS } from "./backoff.js";

export const CONNECTING = "connecting";
export const LIVE = "live";
export const RECONNECTING = "reconnecting";
export const POLLING = "polling";
export const OFFLINE = "offline";

export const FAILURES_BEFORE_POLLING = 3; // the protocol: poll after 3 failed WebSocket attempts
export const CONNECT_TIMEOUT_MS = 10_000; // an attempt without `connection_status` by then failed
export const DEFAULT_HEARTBEAT_S = 25; // the protocol's default `heartbeat_interval`
export const POLL_WAIT_S = 25; // long-poll `timeout`: under the 30 s idle limits of most proxies

// Close codes with their own rule (the protocol); every other code is retried with backoff.
export const CLOSE_AUTH = 4401; // token missing, refused or expired: get a new one first
export const CLOSE_FORBIDDEN = 4403; // not allowed: retrying cannot help

const TIMERS = ["connect", "retry", "background", "stable"];

/**
 * @typedef {object} Model
 * @property {string} state       one of the five states above
 * @property {string|null} reason why the client is in that state (shown to the page)
 * @property {boolean} started
 * @property {boolean} hasWebSocket
 * @property {"ws"|"poll"} mode    which transport the retry loop drives
 * @property {"none"|"opening"|"open"} socket  the one WebSocket slot
 * @property {boolean} pollInFlight
 * @property {boolean} waiting     the retry timer is armed
 * @property {boolean} bgWaiting   the background timer is armed
 * @property {number} attempt      backoff exponent: consecutive failures/drops (reset after a stable minute)
 * @property {number} failed       consecutive WebSocket attempts that never went live
 * @property {number} opened       sockets opened so far (the first one says no `reconnect=1`)
 * @property {number} bgAttempt    background attempts since polling began
 * @property {number} pollFailures consecutive failed polls
 * @property {boolean} everUp      something (socket or poll) has succeeded once
 * @property {string|null} pollReason  why the client polls
 */

/**
 * The model before `start`.
 *
 * @param {{ hasWebSocket: boolean }} options
 * @returns {Model}
 */
export function initialModel({ hasWebSocket }) {
  return Object.freeze({
    state: CONNECTING,
    reason: null,
    started: false,
    hasWebSocket: Boolean(hasWebSocket),
    mode: hasWebSocket ? "ws" : "poll",
    socket: "none",
    pollInFlight: false,
    waiting: false,
    bgWaiting: false,
    attempt: 0,
    failed: 0,
    opened: 0,
    bgAttempt: 0,
    pollFailures: 0,
    everUp: false,
    pollReason: null,
  });
}

/**
 * Apply one event.
 *
 * @param {Model} model
 * @param {{ type: string, [key: string]: any }} event
 * @param {{ random?: () => number }} [env] the jitter source (Math.random by default)
 * @returns {{ model: Model, effects: object[] }}
 */
export function transition(model, event, env = {}) {
  const t = new Step(model, env.random ?? Math.random);
  t.handle(event);
  return { model: Object.freeze(t.m), effects: t.effects };
}

/** One transition's working copy of the model and the effects it collects. */
class Step {
  constructor(model, random) {
    this.m = { ...model };
    this.random = random;
    this.effects = [];
  }

  emit(effect) {
    this.effects.push(effect);
  }

  handle(event) {
    const m = this.m;
    if (m.state === OFFLINE) {
      // Stopped: only the page can start it again (not after close()), or close it for good.
      if (event.type === "retry_now" && m.reason !== "closed" && m.started) this.restart();
      else if (event.type === "close") this.stop("closed");
      return;
    }
    switch (event.type) {
      case "start":
        return this.start();
      case "socket_ready":
        return this.socketReady(event);
      case "socket_closed":
        return this.socketClosed(event.code);
      case "connect_timeout":
        if (m.socket !== "opening") return;
        this.emit({ type: "close_socket", code: 1000, reason: "connect timeout" });
        m.socket = "none";
        return this.attemptFailed("timeout");
      case "pong_timeout":
        if (m.socket !== "open") return;
        this.emit({ type: "close_socket", code: 1000, reason: "no pong" });
        this.dropped("heartbeat");
        return;
      case "stable_timer":
        if (m.socket === "open") m.attempt = 0; // a minute up: the next drop retries quickly
        return;
      case "retry_timer":
        if (!m.waiting) return;
        m.waiting = false;
        return this.attemptNow();
      case "background_timer":
        if (!m.bgWaiting) return;
        m.bgWaiting = false;
        if (m.mode === "poll" && m.socket === "none") this.openSocket();
        return;
      case "poll_ok":
        return this.pollOk();
      case "poll_failed":
        return this.pollFailed(event);
      case "auth_expired":
        return this.stop("auth");
      case "board_gone":
        return this.stop("not_found");
      case "retry_now":
        return this.retryNow();
      case "close":
        return this.stop("closed");
      default:
        return; // unknown events change nothing
    }
  }

  start() {
    const m = this.m;
    if (m.started) return;
    m.started = true;
    m.state = CONNECTING;
    if (m.hasWebSocket) this.openSocket();
    else this.enterPolling("websocket_unavailable");
  }

  restart() {
    const m = this.m;
    Object.assign(m, { attempt: 0, failed: 0, bgAttempt: 0, pollFailures: 0, reason: null });
    m.state = m.everUp ? RECONNECTING : CONNECTING;
    m.mode = m.hasWebSocket ? "ws" : "poll";
    if (m.hasWebSocket) this.openSocket();
    else this.enterPolling("websocket_unavailable");
  }

  openSocket() {
    const m = this.m;
    this.emit({ type: "open_socket", reconnect: m.opened > 0 });
    this.emit({ type: "start_timer", timer: "connect", ms: CONNECT_TIMEOUT_MS });
    m.opened += 1;
    m.socket = "opening";
  }

  /** The retry wait is over (or skipped): try the transport of the current mode. */
  attemptNow() {
    const m = this.m;
    if (m.mode === "ws") {
      if (m.socket === "none") this.openSocket();
    } else if (!m.pollInFlight) {
      this.poll();
    }
  }

  socketReady(event) {
    const m = this.m;
    if (m.socket !== "opening") return; // later `connection_status` frames are just news
    this.emit({ type: "cancel_timer", timer: "connect" });
    if (m.waiting) this.emit({ type: "cancel_timer", timer: "retry" });
    if (m.bgWaiting) this.emit({ type: "cancel_timer", timer: "background" });
    if (m.pollInFlight) this.emit({ type: "abort_poll" });
    const intervalS = positive(event.heartbeatIntervalS) ?? DEFAULT_HEARTBEAT_S;
    this.emit({ type: "start_heartbeat", intervalMs: Math.round(intervalS * 1000) });
    this.emit({ type: "start_timer", timer: "stable", ms: STABLE_AFTER_MS });
    Object.assign(m, {
      state: LIVE,
      reason: null,
      mode: "ws",
      socket: "open",
      pollInFlight: false,
      waiting: false,
      bgWaiting: false,
      failed: 0,
      bgAttempt: 0,
      pollFailures: 0,
      everUp: true,
      pollReason: null,
    });
    this.emit({ type: "flush_submissions", via: "socket" });
  }

  socketClosed(code) {
    const m = this.m;
    if (m.socket === "none") return;
    if (code === CLOSE_AUTH) return this.stop("auth");
    if (code === CLOSE_FORBIDDEN) return this.stop("forbidden");
    if (m.socket === "open") return this.dropped(reasonOfClose(code));
    this.emit({ type: "cancel_timer", timer: "connect" });
    m.socket = "none";
    this.attemptFailed("failed");
  }

  /** A live socket is gone (closed by either side): wait, then reconnect. */
  dropped(reason) {
    const m = this.m;
    this.emit({ type: "stop_heartbeat" });
    this.emit({ type: "cancel_timer", timer: "stable" });
    m.socket = "none";
    this.scheduleRetry(reason);
  }

  /** A socket closed (or timed out) before its `connection_status`. */
  attemptFailed(reason) {
    const m = this.m;
    if (m.mode === "poll") {
      // A background attempt: polling goes on; try again later on the slower schedule.
      this.emit({
        type: "start_timer",
        timer: "background",
        ms: backgroundDelayMs(m.bgAttempt, this.random),
      });
      m.bgAttempt += 1;
      m.bgWaiting = true;
      return;
    }
    m.failed += 1;
    if (m.failed >= FAILURES_BEFORE_POLLING) this.enterPolling("websocket_failed");
    else this.scheduleRetry(reason);
  }

  scheduleRetry(reason) {
    const m = this.m;
    const ms = backoffDelayMs(m.attempt, this.random);
    m.attempt += 1;
    m.waiting = true;
    m.state = RECONNECTING;
    m.reason = reason;
    this.emit({ type: "start_timer", timer: "retry", ms });
  }

  enterPolling(reason) {
    const m = this.m;
    m.mode = "poll";
    m.pollReason = reason;
    m.pollFailures = 0;
    if (m.state !== CONNECTING) {
      m.state = RECONNECTING; // until the first poll answers
      m.reason = reason;
    }
    this.poll();
    this.emit({ type: "flush_submissions", via: "http" });
    if (m.hasWebSocket) {
      m.bgAttempt = 0;
      this.emit({
        type: "start_timer",
        timer: "background",
        ms: backgroundDelayMs(m.bgAttempt, this.random),
      });
      m.bgAttempt += 1;
      m.bgWaiting = true;
    }
  }

  poll() {
    const m = this.m;
    m.pollInFlight = true;
    // Until polling has proved itself, ask for the current state at once (timeout 0), so the
    // page learns within a round trip that the fallback works instead of up to 25 s later.
    this.emit({ type: "poll", waitS: m.state === POLLING ? POLL_WAIT_S : 0 });
  }

  pollOk() {
    const m = this.m;
    if (m.mode !== "poll" || !m.pollInFlight) return;
    m.state = POLLING;
    m.reason = m.pollReason;
    m.pollFailures = 0;
    m.everUp = true;
    this.poll(); // the next long-poll starts at once
  }

  pollFailed({ status, retryAfterS }) {
    const m = this.m;
    if (m.mode !== "poll" || !m.pollInFlight) return;
    m.pollInFlight = false;
    if (status === 401) return this.stop("auth");
    if (status === 403) return this.stop("forbidden");
    if (status === 404) return this.stop("not_found");
    // Network errors, 5xx, 429...: the same backoff as the WebSocket, but never sooner than
    // the server's Retry-After.
    const ms = Math.max(
      backoffDelayMs(m.pollFailures, this.random),
      Math.round((positive(retryAfterS) ?? 0) * 1000),
    );
    m.pollFailures += 1;
    m.waiting = true;
    m.state = RECONNECTING;
    m.reason = "poll_failed";
    this.emit({ type: "start_timer", timer: "retry", ms });
  }

  retryNow() {
    const m = this.m;
    if (!m.started) return;
    if (m.waiting) {
      this.emit({ type: "cancel_timer", timer: "retry" });
      m.waiting = false;
      this.attemptNow();
    }
    if (m.mode === "poll" && m.bgWaiting && m.socket === "none") {
      this.emit({ type: "cancel_timer", timer: "background" });
      m.bgWaiting = false;
      this.openSocket();
    }
  }

  /** Stop everything: offline for `reason`. */
  stop(reason) {
    const m = this.m;
    if (m.socket !== "none") this.emit({ type: "close_socket", code: 1000, reason });
    this.emit({ type: "stop_heartbeat" });
    for (const timer of TIMERS) this.emit({ type: "cancel_timer", timer });
    if (m.pollInFlight) this.emit({ type: "abort_poll" });
    if (reason === "auth") this.emit({ type: "auth_expired" });
    this.emit({ type: "fail_submissions", reason });
    Object.assign(m, {
      state: OFFLINE,
      reason,
      socket: "none",
      pollInFlight: false,
      waiting: false,
      bgWaiting: false,
    });
  }
}

/** The `reason` shown while reconnecting after a live socket closed with `code`. */
export function reasonOfClose(code) {
  switch (code) {
    case 1000:
      return "closed_by_server"; // a normal close from the server: reconnect all the same
    case 1001:
      return "going_away"; // the server restarts or sheds connections
    case 1013:
      return "overloaded"; // the server is overloaded, or this client read too slowly
    default:
      return "dropped";
  }
}

function positive(x) {
  return typeof x === "number" && Number.isFinite(x) && x > 0 ? x : null;
}
