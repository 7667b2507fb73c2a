// static/js/client/machine.js: the connection state machine as a pure function.
// Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  CONNECT_TIMEOUT_MS,
  FAILURES_BEFORE_POLLING,
  initialModel,
  reasonOfClose,
  transition,
} from "../../static/js/client/machine.js";

const HIGH = () => 0.9999999999999999;
const LOW = () => 0;

/** A driver that keeps the model and remembers each step's effects. */
function machine({ hasWebSocket = true, random = HIGH } = {}) {
  let model = initialModel({ hasWebSocket });
  const m = {
    get model() {
      return model;
    },
    effects: [],
    send(type, extra = {}) {
      const result = transition(model, { type, ...extra }, { random });
      assert.ok(Object.isFrozen(result.model), "the model is a frozen value");
      model = result.model;
      m.effects = result.effects;
      return result.effects;
    },
    has(type, props = {}) {
      return m.effects.some(
        (e) => e.type === type && Object.entries(props).every(([k, v]) => e[k] === v),
      );
    },
    timer(name) {
      const e = m.effects.find((x) => x.type === "start_timer" && x.timer === name);
      return e ? e.ms : undefined;
    },
  };
  return m;
}

/** Start and fail `n` WebSocket attempts, firing each retry timer. */
function failAttempts(m, n) {
  for (let i = 0; i < n; i += 1) {
    if (m.model.waiting) m.send("retry_timer");
    m.send("socket_closed", { code: 1006 });
  }
}

function live(m) {
  m.send("start");
  m.send("socket_ready", { heartbeatIntervalS: 25 });
  assert.equal(m.model.state, "live");
}

describe("the first attempt", () => {
  test("opens a socket without reconnect=1 and arms the connect timeout", () => {
    const m = machine();
    assert.equal(m.model.state, "connecting");
    assert.deepEqual(m.send("start"), [
      { type: "open_socket", reconnect: false },
      { type: "start_timer", timer: "connect", ms: CONNECT_TIMEOUT_MS },
    ]);
    assert.equal(m.model.state, "connecting");
    assert.equal(m.model.socket, "opening");
  });

  test("a second start changes nothing", () => {
    const m = machine();
    m.send("start");
    const before = m.model;
    assert.deepEqual(m.send("start"), []);
    assert.deepEqual(m.model, before);
  });

  test("without WebSocket it polls from the start, asking for the state at once", () => {
    const m = machine({ hasWebSocket: false });
    assert.deepEqual(m.send("start"), [
      { type: "poll", waitS: 0 },
      { type: "flush_submissions", via: "http" },
    ]);
    assert.equal(m.model.state, "connecting");
    assert.equal(m.model.mode, "poll");
    m.send("poll_ok");
    assert.equal(m.model.state, "polling");
    assert.equal(m.model.reason, "websocket_unavailable");
    assert.ok(m.has("poll", { waitS: 25 }), "then long-polls");
    assert.ok(!m.has("open_socket"), "and never tries a socket");
  });
});

describe("success", () => {
  test("connection_status makes it live: heartbeat, stable timer, queued submissions", () => {
    const m = machine();
    m.send("start");
    m.send("socket_ready", { heartbeatIntervalS: 7 });
    assert.equal(m.model.state, "live");
    assert.equal(m.model.reason, null);
    assert.ok(m.has("cancel_timer", { timer: "connect" }));
    assert.ok(m.has("start_heartbeat", { intervalMs: 7000 }));
    assert.equal(m.timer("stable"), 60_000);
    assert.ok(m.has("flush_submissions", { via: "socket" }));
  });

  test("the heartbeat defaults to 25 s when the server gives no usable interval", () => {
    for (const heartbeatIntervalS of [undefined, 0, -3, "25", NaN]) {
      const m = machine();
      m.send("start");
      m.send("socket_ready", { heartbeatIntervalS });
      assert.ok(m.has("start_heartbeat", { intervalMs: 25_000 }), String(heartbeatIntervalS));
    }
  });

  test("later connection_status frames change nothing", () => {
    const m = machine();
    live(m);
    const before = m.model;
    assert.deepEqual(m.send("socket_ready", { heartbeatIntervalS: 5 }), []);
    assert.deepEqual(m.model, before);
  });
});

describe("failed attempts", () => {
  test("back off with full jitter, reconnect=1 from the second attempt on", () => {
    const m = machine();
    m.send("start");
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.model.state, "reconnecting");
    assert.equal(m.model.reason, "failed");
    assert.equal(m.timer("retry"), 1000, "attempt 0 waits at most 1 s");
    assert.ok(m.has("cancel_timer", { timer: "connect" }));
    m.send("retry_timer");
    assert.ok(m.has("open_socket", { reconnect: true }));
    assert.equal(m.model.state, "reconnecting");
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 2000, "attempt 1 waits at most 2 s");
  });

  test("with random 0 every wait is the 0.5 s floor", () => {
    const m = machine({ random: LOW });
    m.send("start");
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 500);
    m.send("retry_timer");
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 500);
  });

  test("an attempt that times out counts as failed and closes its socket", () => {
    const m = machine();
    m.send("start");
    m.send("connect_timeout");
    assert.ok(m.has("close_socket"));
    assert.equal(m.model.state, "reconnecting");
    assert.equal(m.model.reason, "timeout");
    assert.equal(m.model.failed, 1);
  });

  test(`after ${FAILURES_BEFORE_POLLING} failures it polls and retries WebSocket in the background`, () => {
    const m = machine();
    m.send("start");
    failAttempts(m, 2);
    assert.equal(m.model.mode, "ws");
    m.send("retry_timer");
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.model.mode, "poll");
    assert.equal(m.model.state, "reconnecting", "not polling before a poll answered");
    assert.ok(m.has("poll", { waitS: 0 }));
    assert.ok(m.has("flush_submissions", { via: "http" }));
    assert.equal(m.timer("background"), 5000, "first background try within 5 s");
    assert.ok(!m.has("start_timer", { timer: "retry" }));
    m.send("poll_ok");
    assert.equal(m.model.state, "polling");
    assert.equal(m.model.reason, "websocket_failed");
    assert.ok(m.has("poll", { waitS: 25 }), "the next poll starts at once");
  });

  test("a timeout also counts toward polling", () => {
    const m = machine();
    m.send("start");
    m.send("connect_timeout");
    m.send("retry_timer");
    m.send("socket_closed", { code: 1013 });
    m.send("retry_timer");
    m.send("connect_timeout");
    assert.equal(m.model.mode, "poll");
  });

  test("drops of a live socket are not failed attempts", () => {
    const m = machine();
    live(m);
    for (let i = 0; i < 5; i += 1) {
      m.send("socket_closed", { code: 1006 });
      m.send("retry_timer");
      m.send("socket_ready", {});
    }
    assert.equal(m.model.mode, "ws");
    assert.equal(m.model.state, "live");
    assert.equal(m.model.attempt, 5, "but the backoff keeps growing while it flaps");
  });

  test("a success resets the failure count", () => {
    const m = machine();
    m.send("start");
    failAttempts(m, 2);
    m.send("retry_timer");
    m.send("socket_ready", {});
    m.send("socket_closed", { code: 1001 });
    failAttempts(m, 2);
    assert.equal(m.model.mode, "ws", "two failures after a success are not three");
  });
});

describe("close codes", () => {
  test("4401: stop, offline 'auth', tell the page", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 4401 });
    assert.equal(m.model.state, "offline");
    assert.equal(m.model.reason, "auth");
    assert.ok(m.has("auth_expired"));
    assert.ok(m.has("stop_heartbeat"));
    assert.ok(m.has("fail_submissions", { reason: "auth" }));
    assert.ok(!m.has("start_timer"), "no retry");
  });

  test("4401 during the first attempt, too", () => {
    const m = machine();
    m.send("start");
    m.send("socket_closed", { code: 4401 });
    assert.equal(m.model.state, "offline");
    assert.ok(m.has("auth_expired"));
  });

  test("4403: stop, offline 'forbidden', no retry and no log-in", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 4403 });
    assert.equal(m.model.state, "offline");
    assert.equal(m.model.reason, "forbidden");
    assert.ok(!m.has("auth_expired"));
    assert.ok(!m.has("start_timer"));
  });

  for (const [code, reason] of [
    [1000, "closed_by_server"],
    [1001, "going_away"],
    [1013, "overloaded"],
    [1006, "dropped"],
    [1008, "dropped"],
    [1011, "dropped"],
    [4000, "dropped"],
  ]) {
    test(`${code} from a live socket: back off and reconnect`, () => {
      const m = machine();
      live(m);
      m.send("socket_closed", { code });
      assert.equal(m.model.state, "reconnecting");
      assert.equal(m.model.reason, reason);
      assert.equal(reasonOfClose(code), reason);
      assert.equal(m.timer("retry"), 1000, "the first retry within 1 s");
      assert.ok(m.has("stop_heartbeat"));
      assert.ok(m.has("cancel_timer", { timer: "stable" }));
      m.send("retry_timer");
      assert.ok(m.has("open_socket", { reconnect: true }));
    });
  }

  test("events after the socket is gone are ignored", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 1001 });
    const before = m.model;
    assert.deepEqual(m.send("socket_closed", { code: 1006 }), []);
    assert.deepEqual(m.send("pong_timeout"), []);
    assert.deepEqual(m.send("connect_timeout"), []);
    assert.deepEqual(m.model, before);
  });
});

describe("heartbeat", () => {
  test("a missing pong closes the socket and reconnects with backoff", () => {
    const m = machine();
    live(m);
    m.send("pong_timeout");
    assert.ok(m.has("close_socket"));
    assert.ok(m.has("stop_heartbeat"));
    assert.equal(m.model.state, "reconnecting");
    assert.equal(m.model.reason, "heartbeat");
    assert.equal(m.model.socket, "none");
    assert.equal(m.timer("retry"), 1000);
    m.send("retry_timer");
    assert.ok(m.has("open_socket", { reconnect: true }));
  });
});

describe("the stable minute", () => {
  test("a minute live resets the backoff", () => {
    const m = machine();
    live(m);
    for (let i = 0; i < 4; i += 1) {
      m.send("socket_closed", { code: 1006 });
      m.send("retry_timer");
      m.send("socket_ready", {});
    }
    assert.equal(m.model.attempt, 4);
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 16_000, "attempt 4 may wait up to 16 s");
    m.send("retry_timer");
    m.send("socket_ready", {});
    m.send("stable_timer");
    assert.equal(m.model.attempt, 0);
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 1000, "back to a quick first retry");
  });

  test("the backoff is capped at 20 s", () => {
    const m = machine();
    live(m);
    for (let i = 0; i < 12; i += 1) {
      m.send("socket_closed", { code: 1006 });
      assert.ok(m.timer("retry") <= 20_000);
      m.send("retry_timer");
      m.send("socket_ready", {});
    }
    m.send("socket_closed", { code: 1006 });
    assert.equal(m.timer("retry"), 20_000);
  });

  test("a stable timer from an older socket does nothing", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 1006 });
    m.send("stable_timer");
    assert.equal(m.model.attempt, 1);
  });
});

describe("polling", () => {
  function polling() {
    const m = machine();
    m.send("start");
    failAttempts(m, 3);
    m.send("poll_ok");
    assert.equal(m.model.state, "polling");
    return m;
  }

  test("a successful background attempt ends polling and goes live", () => {
    const m = polling();
    m.send("background_timer");
    assert.ok(m.has("open_socket", { reconnect: true }));
    assert.equal(m.model.state, "polling", "polling goes on meanwhile");
    m.send("socket_ready", { heartbeatIntervalS: 25 });
    assert.equal(m.model.state, "live");
    assert.equal(m.model.mode, "ws");
    assert.ok(m.has("abort_poll"), "the poll in flight is aborted");
    assert.ok(m.has("start_heartbeat"));
    assert.ok(m.has("flush_submissions", { via: "socket" }));
    assert.equal(m.model.pollInFlight, false);
  });

  test("failed background attempts keep polling and wait longer each time", () => {
    const m = polling();
    const waits = [];
    for (let i = 0; i < 5; i += 1) {
      m.send("background_timer");
      m.send("socket_closed", { code: 1006 });
      waits.push(m.timer("background"));
      assert.equal(m.model.state, "polling");
      assert.ok(!m.has("poll"), "the poll loop is left alone");
    }
    assert.deepEqual(waits, [10_000, 20_000, 20_000, 20_000, 20_000]);
  });

  test("a failed poll backs off ('reconnecting'), then polls again", () => {
    const m = polling();
    m.send("poll_failed", { status: 0 });
    assert.equal(m.model.state, "reconnecting");
    assert.equal(m.model.reason, "poll_failed");
    assert.equal(m.timer("retry"), 1000);
    m.send("retry_timer");
    assert.ok(m.has("poll", { waitS: 0 }), "asks for the state at once after a failure");
    m.send("poll_failed", { status: 503 });
    assert.equal(m.timer("retry"), 2000);
    m.send("retry_timer");
    m.send("poll_ok");
    assert.equal(m.model.state, "polling");
    m.send("poll_failed", { status: 502 });
    assert.equal(m.timer("retry"), 1000, "a good poll resets the poll backoff");
  });

  test("a failed poll waits at least Retry-After", () => {
    const m = polling();
    m.send("poll_failed", { status: 429, retryAfterS: 7 });
    assert.equal(m.timer("retry"), 7000);
  });

  test("401 while polling: the page leads to log-in", () => {
    const m = polling();
    m.send("poll_failed", { status: 401 });
    assert.equal(m.model.state, "offline");
    assert.equal(m.model.reason, "auth");
    assert.ok(m.has("auth_expired"));
  });

  test("404 while polling: offline 'not_found'; 403: 'forbidden'", () => {
    let m = polling();
    m.send("poll_failed", { status: 404 });
    assert.deepEqual([m.model.state, m.model.reason], ["offline", "not_found"]);
    m = polling();
    m.send("poll_failed", { status: 403 });
    assert.deepEqual([m.model.state, m.model.reason], ["offline", "forbidden"]);
  });

  test("a background socket may also go live while a failed poll waits", () => {
    const m = polling();
    m.send("poll_failed", { status: 0 });
    m.send("background_timer");
    m.send("socket_ready", {});
    assert.equal(m.model.state, "live");
    assert.ok(m.has("cancel_timer", { timer: "retry" }));
    assert.ok(!m.has("abort_poll"), "no poll was in flight");
    assert.deepEqual(m.send("retry_timer"), [], "the poll retry is gone");
  });

  test("a drop after returning from polling starts over with WebSocket backoff", () => {
    const m = polling();
    m.send("background_timer");
    m.send("socket_ready", {});
    m.send("socket_closed", { code: 1001 });
    assert.equal(m.model.mode, "ws");
    assert.ok(m.timer("retry") !== undefined);
    assert.equal(m.model.failed, 0);
  });

  test("poll answers that arrive after polling ended are ignored", () => {
    const m = polling();
    m.send("background_timer");
    m.send("socket_ready", {});
    assert.deepEqual(m.send("poll_ok"), []);
    assert.deepEqual(m.send("poll_failed", { status: 500 }), []);
    assert.equal(m.model.state, "live");
  });

  test("4401 on a background attempt stops everything", () => {
    const m = polling();
    m.send("background_timer");
    m.send("socket_closed", { code: 4401 });
    assert.equal(m.model.state, "offline");
    assert.ok(m.has("abort_poll"));
    assert.ok(m.has("auth_expired"));
  });
});

describe("error frames", () => {
  test("auth_expired stops with reason auth", () => {
    const m = machine();
    live(m);
    m.send("auth_expired");
    assert.equal(m.model.state, "offline");
    assert.ok(m.has("close_socket"));
    assert.ok(m.has("auth_expired"));
  });

  test("board_gone stops with reason not_found", () => {
    const m = machine();
    live(m);
    m.send("board_gone");
    assert.deepEqual([m.model.state, m.model.reason], ["offline", "not_found"]);
    assert.ok(!m.has("auth_expired"));
  });
});

describe("retry_now", () => {
  test("skips the backoff wait", () => {
    const m = machine();
    m.send("start");
    m.send("socket_closed", { code: 1006 });
    m.send("retry_now");
    assert.ok(m.has("cancel_timer", { timer: "retry" }));
    assert.ok(m.has("open_socket", { reconnect: true }));
    assert.equal(m.model.waiting, false);
    assert.deepEqual(m.send("retry_timer"), [], "the cancelled timer is forgotten");
  });

  test("while polling, tries the WebSocket at once", () => {
    const m = machine();
    m.send("start");
    failAttempts(m, 3);
    m.send("poll_ok");
    m.send("retry_now");
    assert.ok(m.has("cancel_timer", { timer: "background" }));
    assert.ok(m.has("open_socket", { reconnect: true }));
  });

  test("does nothing while live or while an attempt runs", () => {
    const m = machine();
    m.send("start");
    assert.deepEqual(m.send("retry_now"), []);
    m.send("socket_ready", {});
    assert.deepEqual(m.send("retry_now"), []);
  });

  test("does nothing before start", () => {
    const m = machine();
    assert.deepEqual(m.send("retry_now"), []);
  });

  test("restarts from offline (after a new log-in)", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 4401 });
    m.send("retry_now");
    assert.equal(m.model.state, "reconnecting");
    assert.ok(m.has("open_socket", { reconnect: true }));
    m.send("socket_ready", {});
    assert.equal(m.model.state, "live");
  });

  test("restarting without ever having been up shows 'connecting'", () => {
    const m = machine();
    m.send("start");
    m.send("socket_closed", { code: 4403 });
    m.send("retry_now");
    assert.equal(m.model.state, "connecting");
  });
});

describe("close", () => {
  test("stops everything for good", () => {
    const m = machine();
    live(m);
    m.send("close");
    assert.deepEqual([m.model.state, m.model.reason], ["offline", "closed"]);
    assert.ok(m.has("close_socket"));
    assert.ok(m.has("stop_heartbeat"));
    for (const timer of ["connect", "retry", "background", "stable"]) {
      assert.ok(m.has("cancel_timer", { timer }), timer);
    }
    assert.ok(m.has("fail_submissions", { reason: "closed" }));
    assert.ok(!m.has("auth_expired"));
    for (const type of ["retry_now", "start", "retry_timer", "socket_ready", "poll_ok"]) {
      assert.deepEqual(m.send(type), [], type);
      assert.equal(m.model.reason, "closed");
    }
  });

  test("while polling aborts the poll", () => {
    const m = machine({ hasWebSocket: false });
    m.send("start");
    m.send("close");
    assert.ok(m.has("abort_poll"));
    assert.equal(m.model.state, "offline");
  });

  test("before start", () => {
    const m = machine();
    m.send("close");
    assert.equal(m.model.state, "offline");
    assert.deepEqual(m.send("start"), []);
  });

  test("after another stop turns the reason into 'closed'", () => {
    const m = machine();
    live(m);
    m.send("socket_closed", { code: 4403 });
    m.send("close");
    assert.equal(m.model.reason, "closed");
    assert.deepEqual(m.send("retry_now"), []);
  });
});

test("unknown events change nothing", () => {
  const m = machine();
  m.send("start");
  const before = m.model;
  assert.deepEqual(m.send("nonsense"), []);
  assert.deepEqual(m.model, before);
});

test("transition never changes the model it was given", () => {
  const model = initialModel({ hasWebSocket: true });
  const copy = { ...model };
  transition(model, { type: "start" });
  assert.deepEqual({ ...model }, copy);
});
