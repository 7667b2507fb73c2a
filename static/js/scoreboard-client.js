/**
 * Scoreboard browser client: one live connection to one board, as a small library.
 *
 * A plain ES module without dependencies or a build step; it runs in Chromium and Firefox,
 * and in Node 20 with the globals injected (which is how it is tested).
 *
 * ```js
 * import { connect } from "/static/js/scoreboard-client.js";
 *
 * const live = connect({
 *   board: "weekly-quiz",
 *   token: () => Promise.resolve(sessionStorage.getItem("token")), // or a string, or null
 *   onState(state, info) {
 *     // "connecting" | "live" | "reconnecting" | "polling" | "offline"
 *     indicator.textContent =
 *       state === "reconnecting" && info.retryInS !== undefined
 *         ? `reconnecting in ${info.retryInS}s`
 *         : state;
 *   },
 *   onFrame({ type, data }) {
 *     if (type === "snapshot" || type === "score_update") renderTop10(data.top_10);
 *     if (type === "snapshot") renderYou(data.you);
 *     if (type === "rank_update") renderRank(data.rank, data.previous_rank, data.score);
 *     if (type === "connection_status") renderOnline(data.user_count);
 *   },
 *   onAuthExpired() {
 *     location.assign("/?next=" + encodeURIComponent(location.pathname));
 *   },
 * });
 *
 * try {
 *   const ack = await live.submit({ score: 1200, requestId: crypto.randomUUID() });
 *   showRank(ack.rank);
 * } catch (err) {
 *   showFormError(err.message, err.code, err.retryAfter); // e.g. "rate_limited", 0.5
 * }
 *
 * retryButton.onclick = () => live.retryNow();
 * window.addEventListener("pagehide", () => live.close());
 * ```
 *
 * ## connect(options) -> Live
 *
 * - `board` (string, required): the board to follow.
 * - `token`: a string, `null` (anonymous, when the server allows anonymous reads), or a
 *   function returning a Promise of either. A function is called before every connection
 *   attempt, every long-poll and every submission, so it can hand out a refreshed token.
 *   The token travels in the WebSocket subprotocol offer (`scoreboard.v1`,
 *   `bearer.<token>`) or an `Authorization` header, never in a URL.
 * - `onState(state, info)`: the connection indicator. `info.retryInS` (whole seconds,
 *   counting down once a second) is present while "reconnecting" waits before the next
 *   attempt and absent while that attempt runs; `info.reason` says why (offline: "auth",
 *   "forbidden", "not_found", "closed"; reconnecting: "failed", "timeout", "heartbeat",
 *   "going_away", "overloaded", "closed_by_server", "dropped", "poll_failed",
 *   "websocket_failed", "websocket_unavailable"; polling: "websocket_failed" or
 *   "websocket_unavailable"). Show "reconnecting…" when `retryInS` is absent.
 * - `onFrame({type, data})`: "snapshot", "score_update", "rank_update" and
 *   "connection_status" frames. State frames (snapshot, score_update) arrive only when their
 *   `seq` is higher than the last one delivered (the first always arrives); rank_update
 *   frames likewise against the last rank_update. While polling, each newer long-poll answer
 *   arrives as a "snapshot" (`{board, seq, top_10, you}`, plus `total_players` only when
 *   the answer has it).
 * - `onAuthExpired()`: the token was refused or expired (close 4401, an `error` frame
 *   `token_expired`/`auth_failed`, or HTTP 401). The client is then "offline" with reason
 *   "auth"; lead the user to log in. After a new log-in without a page load, make the token
 *   getter return the new token and call `retryNow()`.
 * - `baseUrl`: the server's origin (default `location.origin`); the WebSocket URL is derived
 *   from it (`http` -> `ws`, `https` -> `wss`).
 * - For tests, each of `WebSocket`, `fetch`, `setTimeout`, `clearTimeout`, `setInterval`,
 *   `clearInterval`, `now` (ms) and `random` ([0, 1)) may be passed in; they default to the
 *   globals. `WebSocket: null` behaves like a browser without WebSocket.
 *
 * ## Live
 *
 * - `submit({score, subscore?, metadata?, requestId?})` -> Promise: resolves with the `ack`
 *   frame's data over the WebSocket, or the HTTP Result (`{board, user_id, score, subscore,
 *   rank, previous_rank, improved, seq}`) while polling. Rejects with a `ScoreboardError`
 *   (`code`, `message`, `retryAfter` in seconds or undefined): the server's code (e.g.
 *   "validation_failed", "rate_limited"), or "auth_failed" (no token), "timeout" (no answer
 *   within 15 s), "network_error", "closed". `requestId` is the idempotency key: pass your
 *   own (e.g. `crypto.randomUUID()`) and reuse it when the user retries a timed-out
 *   submission, so a score is never counted twice. A submission sent over a socket that
 *   drops before its answer is sent again over the next connection with the same key; one
 *   that waits more than 5 s for a live socket goes over HTTP instead.
 * - `retryNow()`: skip the current wait ("retry" button); while polling, try the WebSocket
 *   at once. From "offline" (except after `close()`) it starts again from scratch.
 * - `close()`: stop everything; the state becomes "offline" with reason "closed" and
 *   waiting submissions reject with code "closed".
 * - `state`: the current state string.
 *
 * ## Behaviour
 *
 * - WebSocket URL `ws(s)://host/ws?board=ID`, plus `&reconnect=1` from the second attempt
 *   on. An attempt has succeeded when its `connection_status` arrives (within 10 s).
 * - Heartbeat: a `ping` every `heartbeat_interval` seconds (from `connection_status`,
 *   25 by default); no `pong` within 10 s closes the socket and reconnects.
 * - Reconnects wait `max(0.5, random() * min(20, 2^n))` seconds for the n-th consecutive
 *   failure (n from 0); n starts again after a minute live. Close 4401: onAuthExpired and
 *   stop; 4403: stop; any other code (1000, 1001, 1013, ...): back off and reconnect.
 * - After 3 consecutive failed WebSocket attempts, or without WebSocket, the client
 *   long-polls `GET /api/boards/{board}/updates?since=SEQ&timeout=25` (`timeout=0` for the
 *   first poll of a run, to learn the current state at once). Failed polls back off like the
 *   WebSocket (and honour `Retry-After`); 401 -> onAuthExpired, 403 -> offline "forbidden",
 *   404 -> offline "not_found". Meanwhile the WebSocket is retried in the background after
 *   2.5-5 s, then 5-10 s, then every 10-20 s; the first that succeeds ends polling (the poll
 *   in flight is aborted) and the client is live again.
 * - A browser `online` event triggers `retryNow()`.
 *
 * Note: a browser cannot see why a WebSocket handshake was refused, so an expired token at
 * connection time looks like a network failure; after three such attempts the long-poll's
 * 401 reveals it and onAuthExpired is called. Likewise, a token that is not a valid
 * subprotocol value (a JWT always is) makes every WebSocket attempt fail, and the client
 * settles on polling with the token in an `Authorization` header.
 */

import { secondsLeft } from "./client/backoff.js";
import * as machine from "./client/machine.js";
import { admit, createGate, pollAnswerToFrame, pollSince } from "./client/sequence.js";

const SUBPROTOCOL = "scoreboard.v1"; // the protocol's subprotocol name
const BEARER_PREFIX = "bearer."; // the token rides in a second subprotocol offer
const PONG_TIMEOUT_MS = 10_000; // the protocol: reconnect when no pong within 10 s
const SUBMIT_TIMEOUT_MS = 15_000; // a submission without an answer by then rejects
const SUBMIT_SOCKET_WAIT_MS = 5_000; // waiting for a live socket longer: use HTTP
const POLL_GRACE_MS = 10_000; // a long-poll silent this long past its timeout is dead
const CONFLICT_RETRY_MS = 1_000; // a resent submission met its still-running first copy
const COUNTDOWN_TICK_MS = 1_000; // retryInS counts down once a second

/** The rejection of `submit()`: the protocol's error `code`, its message, `retryAfter` (s). */
export class ScoreboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ retryAfter?: number, status?: number }} [extra]
   */
  constructor(code, message, { retryAfter, status } = {}) {
    super(message);
    this.name = "ScoreboardError";
    this.code = code;
    this.retryAfter = retryAfter;
    if (status !== undefined) this.status = status;
  }
}

// What a waiting submission is told when the client stops for good.
const STOP_ERRORS = {
  auth: ["auth_failed", "Your session has expired; log in again"],
  forbidden: ["forbidden", "This board is not open to you"],
  not_found: ["not_found", "This board does not exist"],
  closed: ["closed", "The connection was closed"],
};

/**
 * Open a live connection to one board. See the module comment for the options.
 *
 * @param {object} options
 * @returns {{ submit: (s: object) => Promise<object>, retryNow: () => void,
 *   close: () => void, readonly state: string }}
 */
export function connect(options) {
  const { board, token = null, onState, onFrame, onAuthExpired } = options ?? {};
  if (typeof board !== "string" || board === "") {
    throw new TypeError("connect(): `board` must be a non-empty string");
  }
  // `WebSocket: null` stands for a browser without WebSocket; left out, the global is used.
  const WebSocketImpl = options.WebSocket !== undefined ? options.WebSocket : globalThis.WebSocket;
  // Browsers throw "Illegal invocation" when fetch or the timers are called on another
  // object, so the defaults are wrapped rather than copied.
  const fetchImpl = options.fetch ?? ((...args) => globalThis.fetch(...args));
  const setTimer = options.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
  const clearTimer = options.clearTimeout ?? ((id) => globalThis.clearTimeout(id));
  const setRepeat = options.setInterval ?? ((fn, ms) => globalThis.setInterval(fn, ms));
  const clearRepeat = options.clearInterval ?? ((id) => globalThis.clearInterval(id));
  const now = options.now ?? (() => Date.now());
  const random = options.random ?? Math.random;
  const AbortControllerImpl = globalThis.AbortController;

  const httpBase = String(options.baseUrl ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\//i.test(httpBase)) {
    throw new TypeError("connect(): `baseUrl` must be an http(s) URL");
  }
  const wsBase = httpBase.replace(/^http/i, "ws"); // http -> ws, https -> wss
  const boardPath = encodeURIComponent(board);
  const getToken =
    typeof token === "function"
      ? () => Promise.resolve().then(token).then((t) => t || null)
      : () => Promise.resolve(token || null);

  let model = machine.initialModel({ hasWebSocket: typeof WebSocketImpl === "function" });
  let gate = createGate();

  // The current WebSocket; `socketGen` invalidates an attempt still waiting for its token.
  let socket = null;
  let socketGen = 0;
  let socketHasToken = false;
  let statusSeen = false;
  let heartbeat = null;
  let pongTimer = null;

  const timers = new Map(); // the machine's named timers -> ids
  let retryDeadline = null; // when the armed retry timer fires (ms), for retryInS
  let countdown = null;
  let lastShown = null;

  let pollCtrl = null;
  let pollGen = 0;

  /** requestId -> a waiting submission */
  const pending = new Map();

  // -- the machine -------------------------------------------------------------------------

  // Page callbacks may call back into the client (close() from onAuthExpired, say): their
  // events wait until the current one has been carried out completely.
  const queue = [];
  let draining = false;
  function dispatch(event) {
    queue.push(event);
    if (draining) return;
    draining = true;
    try {
      while (queue.length > 0) {
        const result = machine.transition(model, queue.shift(), { random });
        model = result.model;
        for (const effect of result.effects) perform(effect);
        showState();
      }
    } finally {
      draining = false;
    }
  }

  function perform(effect) {
    switch (effect.type) {
      case "open_socket":
        return openSocket(effect.reconnect);
      case "close_socket":
        return closeSocket(effect.code, effect.reason);
      case "start_heartbeat":
        return startHeartbeat(effect.intervalMs);
      case "stop_heartbeat":
        return stopHeartbeat();
      case "start_timer":
        return startTimer(effect.timer, effect.ms);
      case "cancel_timer":
        return cancelTimer(effect.timer);
      case "poll":
        return void pollOnce(effect.waitS);
      case "abort_poll":
        return abortPoll();
      case "flush_submissions":
        return flushSubmissions(effect.via);
      case "fail_submissions":
        return failSubmissions(effect.reason);
      case "auth_expired":
        return call(onAuthExpired);
      default:
        return undefined;
    }
  }

  const TIMER_EVENTS = {
    connect: "connect_timeout",
    retry: "retry_timer",
    background: "background_timer",
    stable: "stable_timer",
  };

  function startTimer(name, ms) {
    cancelTimer(name);
    timers.set(
      name,
      setTimer(() => {
        timers.delete(name);
        if (name === "retry") stopCountdown();
        dispatch({ type: TIMER_EVENTS[name] });
      }, ms),
    );
    if (name === "retry") {
      retryDeadline = now() + ms; // cancelTimer above stopped any earlier countdown
      countdown = setRepeat(showState, COUNTDOWN_TICK_MS);
    }
  }

  function cancelTimer(name) {
    if (timers.has(name)) {
      clearTimer(timers.get(name));
      timers.delete(name);
    }
    if (name === "retry") stopCountdown();
  }

  function stopCountdown() {
    retryDeadline = null;
    if (countdown !== null) {
      clearRepeat(countdown);
      countdown = null;
    }
  }

  /** Tell the page the state, once per change of state, reason or countdown second. */
  function showState() {
    const info = {};
    if (model.reason) info.reason = model.reason;
    if (model.state === machine.RECONNECTING && retryDeadline !== null) {
      info.retryInS = secondsLeft(retryDeadline, now());
    }
    const key = `${model.state}|${info.reason ?? ""}|${info.retryInS ?? ""}`;
    if (key === lastShown) return;
    lastShown = key;
    call(onState, model.state, info);
  }

  // -- the WebSocket -----------------------------------------------------------------------

  function openSocket(reconnect) {
    const gen = ++socketGen;
    statusSeen = false;
    getToken().then(
      (tok) => {
        if (gen !== socketGen) return; // closed or timed out while the token was fetched
        const url = `${wsBase}/ws?board=${boardPath}${reconnect ? "&reconnect=1" : ""}`;
        const protocols = tok ? [SUBPROTOCOL, BEARER_PREFIX + tok] : [SUBPROTOCOL];
        let ws;
        try {
          ws = new WebSocketImpl(url, protocols);
        } catch {
          dispatch({ type: "socket_closed", code: 1006 }); // e.g. a token that is no HTTP token
          return;
        }
        socket = ws;
        socketHasToken = Boolean(tok);
        ws.onmessage = (event) => {
          if (socket === ws) receive(event.data);
        };
        ws.onclose = (event) => {
          if (socket !== ws) return;
          forgetSocket();
          dispatch({ type: "socket_closed", code: event.code });
        };
        // An error is followed by a close in browsers, but the error is the failure itself:
        // act on it at once, and keep the close code 1006 it would bring anyway.
        ws.onerror = () => {
          if (socket !== ws) return;
          forgetSocket();
          quietClose(ws, 1000, "error");
          dispatch({ type: "socket_closed", code: 1006 });
        };
      },
      () => {
        if (gen === socketGen) dispatch({ type: "socket_closed", code: 1006 });
      },
    );
  }

  function closeSocket(code, reason) {
    socketGen += 1;
    const ws = socket;
    forgetSocket();
    if (ws) quietClose(ws, code, reason);
  }

  function quietClose(ws, code, reason) {
    ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  /** The current socket is gone: submissions sent over it wait for the next connection. */
  function forgetSocket() {
    const old = socket;
    socket = null;
    socketHasToken = false;
    if (old === null) return;
    for (const entry of pending.values()) {
      if (entry.sentOn === old) {
        entry.sentOn = null;
        waitForSocket(entry);
      }
    }
  }

  function send(message) {
    if (socket === null) return false;
    try {
      socket.send(JSON.stringify(message));
      return true;
    } catch {
      return false; // not open after all: its close event follows
    }
  }

  function receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return; // not ours to understand
    }
    if (frame === null || typeof frame !== "object" || typeof frame.type !== "string") return;
    const data = frame.data !== null && typeof frame.data === "object" ? frame.data : {};
    switch (frame.type) {
      case "connection_status":
        if (!statusSeen) {
          statusSeen = true;
          dispatch({ type: "socket_ready", heartbeatIntervalS: data.heartbeat_interval });
        }
        return deliver({ type: frame.type, data });
      case "snapshot":
      case "score_update":
      case "rank_update":
        return deliver({ type: frame.type, data });
      case "pong":
        if (pongTimer !== null) {
          clearTimer(pongTimer);
          pongTimer = null;
        }
        return undefined;
      case "ack":
        return settle(data.request_id, (entry) => entry.resolve(data));
      case "error":
        return receiveError(data);
      default:
        return undefined;
    }
  }

  function receiveError(data) {
    const id = data.request_id;
    if (typeof id === "string" && pending.has(id)) {
      const entry = pending.get(id);
      if (data.code === "conflict" && entry.sends > 1) {
        retryLater(entry); // our own earlier copy still runs on the server
      } else {
        const retryAfter = typeof data.retry_after === "number" ? data.retry_after : undefined;
        settle(id, (e) => e.reject(new ScoreboardError(data.code, data.message, { retryAfter })));
      }
      if (data.code === "token_expired") dispatch({ type: "auth_expired" });
      return;
    }
    if (data.code === "token_expired" || (data.code === "auth_failed" && id === undefined)) {
      dispatch({ type: "auth_expired" });
    } else if (data.code === "not_found" && id === undefined) {
      dispatch({ type: "board_gone" });
    }
    // Other errors (rate_limited, bad_request...) concern one message, not the connection.
  }

  function deliver(frame) {
    if (frame.type !== "connection_status" && frame.data.board !== board) return;
    const verdict = admit(gate, frame);
    if (!verdict.apply) return;
    gate = verdict.gate;
    call(onFrame, frame);
  }

  function startHeartbeat(intervalMs) {
    stopHeartbeat();
    heartbeat = setRepeat(() => {
      if (!send({ type: "ping", data: { t: now() } })) return;
      // One pong timer at a time: any pong shows the connection is alive.
      if (pongTimer === null) {
        pongTimer = setTimer(() => {
          pongTimer = null;
          dispatch({ type: "pong_timeout" });
        }, PONG_TIMEOUT_MS);
      }
    }, intervalMs);
  }

  function stopHeartbeat() {
    if (heartbeat !== null) clearRepeat(heartbeat);
    if (pongTimer !== null) clearTimer(pongTimer);
    heartbeat = pongTimer = null;
  }

  // -- the long-poll -----------------------------------------------------------------------

  async function pollOnce(waitS) {
    abortPoll();
    const gen = ++pollGen;
    const ctrl = typeof AbortControllerImpl === "function" ? new AbortControllerImpl() : null;
    pollCtrl = ctrl;
    const guard = setTimer(() => {
      if (gen !== pollGen) return;
      abortPoll();
      dispatch({ type: "poll_failed", status: 0 });
    }, waitS * 1000 + POLL_GRACE_MS);
    try {
      const tok = await getToken();
      if (gen !== pollGen) return;
      const url =
        `${httpBase}/api/boards/${boardPath}/updates` +
        `?since=${pollSince(gate)}&timeout=${waitS}`;
      const headers = { Accept: "application/json" };
      if (tok) headers.Authorization = `Bearer ${tok}`;
      const init = { headers, cache: "no-store" };
      if (ctrl) init.signal = ctrl.signal;
      const response = await fetchImpl(url, init);
      if (gen !== pollGen) return;
      if (!response.ok) {
        pollCtrl = null; // finished: nothing left to abort
        const retryAfterS = parseRetryAfter(response);
        dispatch({ type: "poll_failed", status: response.status, retryAfterS });
        return;
      }
      const answer = await response.json();
      if (gen !== pollGen) return;
      pollCtrl = null;
      // The machine first (state "polling", next poll under way), then the page.
      dispatch({ type: "poll_ok" });
      deliver(pollAnswerToFrame(answer));
    } catch {
      if (gen === pollGen) {
        pollCtrl = null;
        dispatch({ type: "poll_failed", status: 0 });
      }
    } finally {
      clearTimer(guard);
    }
  }

  function abortPoll() {
    pollGen += 1;
    if (pollCtrl !== null) {
      pollCtrl.abort();
      pollCtrl = null;
    }
  }

  // -- submissions -------------------------------------------------------------------------

  function submit({ score, subscore, metadata, requestId } = {}) {
    if (model.state === machine.OFFLINE) {
      const [code, message] = STOP_ERRORS[model.reason] ?? STOP_ERRORS.closed;
      return Promise.reject(new ScoreboardError(code, message));
    }
    const id = requestId ?? newRequestId(random);
    if (pending.has(id)) return pending.get(id).promise; // the same submission, once
    const fields = { score };
    if (subscore !== undefined) fields.subscore = subscore;
    if (metadata !== undefined) fields.metadata = metadata;
    const entry = {
      id,
      fields,
      token: null,
      sentOn: null, // the socket it went out on, while that socket lives
      viaHttp: false, // posted over HTTP (then the socket leaves it alone)
      sends: 0,
      waitTimer: null,
      timeout: null,
    };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    pending.set(id, entry);
    entry.timeout = setTimer(() => {
      settle(id, (e) => e.reject(new ScoreboardError("timeout", "The server did not answer in time")));
    }, SUBMIT_TIMEOUT_MS);
    const noToken = () =>
      settle(id, (e) => e.reject(new ScoreboardError("auth_failed", "Log in to submit a score")));
    getToken().then((tok) => {
      if (pending.get(id) !== entry) return;
      if (!tok) return noToken();
      entry.token = tok;
      route(entry);
      return undefined;
    }, noToken);
    return entry.promise;
  }

  /** Send a submission the best way open now, or let it wait for one. */
  function route(entry) {
    if (entry.viaHttp || entry.token === null) return;
    if (model.state === machine.LIVE && socket !== null) {
      // An anonymous socket cannot submit; the token goes over HTTP instead.
      if (socketHasToken) sendOverSocket(entry);
      else void post(entry);
    } else if (model.mode === "poll") {
      void post(entry);
    } else {
      waitForSocket(entry);
    }
  }

  function sendOverSocket(entry) {
    stopWaiting(entry);
    entry.sends += 1;
    const data = { board, ...entry.fields, request_id: entry.id };
    if (send({ type: "submit_score", data })) entry.sentOn = socket;
    else waitForSocket(entry);
  }

  function waitForSocket(entry) {
    if (entry.waitTimer !== null) return;
    entry.waitTimer = setTimer(() => {
      entry.waitTimer = null;
      if (pending.get(entry.id) === entry && entry.sentOn === null && !entry.viaHttp) {
        void post(entry);
      }
    }, SUBMIT_SOCKET_WAIT_MS);
  }

  function stopWaiting(entry) {
    if (entry.waitTimer !== null) {
      clearTimer(entry.waitTimer);
      entry.waitTimer = null;
    }
  }

  function retryLater(entry) {
    setTimer(() => {
      if (pending.get(entry.id) !== entry) return;
      if (entry.viaHttp) void post(entry);
      else {
        entry.sentOn = null;
        route(entry);
      }
    }, CONFLICT_RETRY_MS);
  }

  async function post(entry) {
    stopWaiting(entry);
    entry.viaHttp = true;
    entry.sentOn = null;
    entry.sends += 1;
    let response;
    try {
      response = await fetchImpl(`${httpBase}/api/boards/${boardPath}/scores`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          Authorization: `Bearer ${entry.token}`,
          "Idempotency-Key": entry.id,
        },
        body: JSON.stringify(entry.fields),
      });
    } catch {
      settle(entry.id, (e) =>
        e.reject(new ScoreboardError("network_error", "The server could not be reached")),
      );
      return;
    }
    if (pending.get(entry.id) !== entry) return; // timed out or closed meanwhile
    const body = await response.json().catch(() => null);
    if (pending.get(entry.id) !== entry) return;
    if (response.ok) {
      settle(entry.id, (e) => e.resolve(body));
      return;
    }
    if (response.status === 409 && entry.sends > 1) {
      retryLater(entry); // our own earlier copy still runs on the server
      return;
    }
    const problem = body !== null && typeof body === "object" ? body : {};
    const error = new ScoreboardError(
      typeof problem.code === "string" ? problem.code : `http_${response.status}`,
      problem.detail || problem.title || `HTTP ${response.status}`,
      { retryAfter: parseRetryAfter(response), status: response.status },
    );
    settle(entry.id, (e) => e.reject(error));
    if (response.status === 401) dispatch({ type: "auth_expired" });
  }

  /** Finish a waiting submission once: `how(entry)` resolves or rejects it. */
  function settle(id, how) {
    const entry = typeof id === "string" ? pending.get(id) : undefined;
    if (entry === undefined) return;
    pending.delete(id);
    stopWaiting(entry);
    clearTimer(entry.timeout);
    how(entry);
  }

  function flushSubmissions(via) {
    for (const entry of [...pending.values()]) {
      if (entry.viaHttp || entry.token === null || entry.sentOn !== null) continue;
      if (via === "socket") route(entry);
      else void post(entry);
    }
  }

  function failSubmissions(reason) {
    const [code, message] = STOP_ERRORS[reason] ?? STOP_ERRORS.closed;
    for (const id of [...pending.keys()]) {
      settle(id, (e) => e.reject(new ScoreboardError(code, message)));
    }
  }

  // -- the page's handle -------------------------------------------------------------------

  const onOnline = () => dispatch({ type: "retry_now" });
  const canListen = typeof globalThis.addEventListener === "function";
  if (canListen) globalThis.addEventListener("online", onOnline);

  // Start after connect() has returned, so that the first onState call can already use the
  // returned handle.
  Promise.resolve().then(() => dispatch({ type: "start" }));

  return {
    submit,
    retryNow() {
      dispatch({ type: "retry_now" });
    },
    close() {
      if (canListen) globalThis.removeEventListener("online", onOnline);
      dispatch({ type: "close" });
    },
    get state() {
      return model.state;
    },
  };
}

/** Seconds from an HTTP `Retry-After` header (a number of seconds), or undefined. */
function parseRetryAfter(response) {
  const value = response.headers?.get?.("Retry-After");
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

function newRequestId(random) {
  if (typeof globalThis.crypto?.randomUUID === "function") return globalThis.crypto.randomUUID();
  let id = "";
  for (let i = 0; i < 4; i += 1) id += Math.floor(random() * 2 ** 32).toString(36);
  return `req-${Date.now().toString(36)}-${id}`;
}

/** Call a page callback; an exception in the page must not break the connection. */
function call(fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (err) {
    if (typeof globalThis.reportError === "function") globalThis.reportError(err);
    else console.error(err);
  }
}
