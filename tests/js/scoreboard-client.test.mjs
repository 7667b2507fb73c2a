// static/js/scoreboard-client.js in Node with a fake WebSocket, a fake fetch and a fake clock
// injected: no real network, no real waiting. Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { connect, ScoreboardError } from "../../static/js/scoreboard-client.js";

const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const BOARD = "weekly-quiz";
const ALMOST_ONE = () => 0.9999999999999999; // every backoff wait at the top of its window

/** Let every pending promise callback run (real macrotask; the fake timers stay still). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Timers and a clock that move only when the test says so. */
class FakeClock {
  constructor() {
    this.t = 0;
    this.nextId = 1;
    this.timers = new Map();
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => this.add(fn, ms, null);
    this.setInterval = (fn, ms) => this.add(fn, ms, Math.max(1, ms));
    this.clearTimeout = (id) => this.timers.delete(id);
    this.clearInterval = (id) => this.timers.delete(id);
  }

  add(fn, ms, every) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn, every, id });
    return id;
  }

  /** Move the clock forward by `ms`, firing every timer that falls due, in order. */
  async advance(ms) {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const timer of this.timers.values()) {
        if (timer.at > end) continue;
        if (next === null || timer.at < next.at || (timer.at === next.at && timer.id < next.id)) {
          next = timer;
        }
      }
      if (next === null) break;
      this.t = next.at;
      if (next.every === null) this.timers.delete(next.id);
      else next.at += next.every;
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

function response(status, body, headers = {}) {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: { get: (name) => lower[name.toLowerCase()] ?? null },
    json: async () => {
      if (body === undefined) throw new SyntaxError("no JSON");
      return body;
    },
  };
}

/** A client wired to fakes, with everything it did recorded. */
async function harness({
  token = TOKEN,
  webSocket = true,
  random = ALMOST_ONE,
  callbacks = {},
} = {}) {
  const clock = new FakeClock();
  const sockets = [];
  const fetches = [];
  const states = [];
  const frames = [];
  const h = { clock, sockets, fetches, states, frames, authExpired: 0 };

  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closedWith = null;
      this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(text) {
      if (this.closedWith !== null) throw new Error("InvalidStateError");
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
    }

    // -- what the server does
    frame(type, data) {
      this.onmessage?.({ data: JSON.stringify({ type, data }) });
    }

    status(extra = {}) {
      this.frame("connection_status", {
        status: "connected",
        user_count: 3,
        connection_id: "c-1",
        user: null,
        heartbeat_interval: 25,
        server_time: "2026-11-25T21:00:00Z",
        ...extra,
      });
    }

    serverClose(code) {
      this.onclose?.({ code, reason: "" });
    }

    fail() {
      this.onerror?.({});
    }

    sentOf(type) {
      return this.sent.filter((m) => m.type === type);
    }
  }

  function fetch(url, init = {}) {
    return new Promise((resolve, reject) => {
      const call = {
        url,
        init,
        aborted: false,
        respond: (status, body, headers) => resolve(response(status, body, headers)),
        failNetwork: () => reject(new TypeError("Failed to fetch")),
      };
      init.signal?.addEventListener("abort", () => {
        call.aborted = true;
        reject(new DOMException("The operation was aborted.", "AbortError"));
      });
      fetches.push(call);
    });
  }

  h.live = connect({
    board: BOARD,
    token,
    onState: (state, info) => {
      states.push([state, info]);
      callbacks.onState?.(state, info, h);
    },
    onFrame: (frame) => frames.push(frame),
    onAuthExpired: () => {
      h.authExpired += 1;
      callbacks.onAuthExpired?.(h);
    },
    baseUrl: "https://scores.example",
    WebSocket: webSocket ? FakeWebSocket : null,
    fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    setInterval: clock.setInterval,
    clearInterval: clock.clearInterval,
    now: clock.now,
    random,
  });
  h.socket = () => sockets[sockets.length - 1];
  h.state = () => states[states.length - 1];
  h.frameTypes = () => frames.map((f) => `${f.type}:${f.data.seq ?? "-"}`);
  h.polls = () => fetches.filter((f) => f.url.includes("/updates"));
  h.posts = () => fetches.filter((f) => f.init.method === "POST");
  await settle();
  return h;
}

/** Fail three WebSocket attempts, waiting out each backoff (1 s, then 2 s). */
async function failThreeTimes(h) {
  h.socket().fail();
  await h.clock.advance(1000);
  h.socket().serverClose(1006);
  await h.clock.advance(2000);
  h.socket().serverClose(1006);
  await settle();
}

async function goLive(h) {
  h.socket().status();
  await settle();
  assert.deepEqual(h.state(), ["live", {}]);
}

describe("connecting", () => {
  test("the first attempt: ws URL with the board, token only in the subprotocol", async () => {
    const h = await harness();
    assert.equal(h.sockets.length, 1);
    assert.equal(h.socket().url, "wss://scores.example/ws?board=weekly-quiz");
    assert.deepEqual(h.socket().protocols, ["scoreboard.v1", `bearer.${TOKEN}`]);
    assert.deepEqual(h.states, [["connecting", {}]]);
    assert.equal(h.live.state, "connecting");
    await goLive(h);
    assert.equal(h.live.state, "live");
    assert.deepEqual(h.frameTypes(), ["connection_status:-"]);
    assert.equal(h.frames[0].data.user_count, 3);
  });

  test("anonymous: only the scoreboard.v1 subprotocol", async () => {
    const h = await harness({ token: null });
    assert.deepEqual(h.socket().protocols, ["scoreboard.v1"]);
  });

  test("the token getter is asked before every attempt", async () => {
    let n = 0;
    const h = await harness({ token: async () => `token-${++n}` });
    assert.deepEqual(h.socket().protocols, ["scoreboard.v1", "bearer.token-1"]);
    h.socket().serverClose(1006);
    await h.clock.advance(1000);
    assert.deepEqual(h.socket().protocols, ["scoreboard.v1", "bearer.token-2"]);
  });

  test("reconnect=1 from the second attempt on, and no token in any URL", async () => {
    const h = await harness();
    await failThreeTimes(h);
    await h.clock.advance(5000); // the first background attempt
    assert.equal(h.sockets.length, 4);
    assert.deepEqual(
      h.sockets.map((s) => s.url.includes("reconnect=1")),
      [false, true, true, true],
    );
    for (const url of [...h.sockets.map((s) => s.url), ...h.fetches.map((f) => f.url)]) {
      assert.ok(!url.includes(TOKEN), url);
      assert.ok(!url.includes("access_token"), url);
    }
  });

  test("an attempt without connection_status within 10 s fails", async () => {
    const h = await harness();
    await h.clock.advance(9_999);
    assert.equal(h.live.state, "connecting");
    await h.clock.advance(1);
    assert.deepEqual(h.sockets[0].closedWith, { code: 1000, reason: "connect timeout" });
    assert.equal(h.live.state, "reconnecting");
    await h.clock.advance(1000);
    assert.equal(h.sockets.length, 2);
  });
});

describe("frames", () => {
  test("state frames only with a newer seq; rank_update on its own sequence", async () => {
    const h = await harness();
    await goLive(h);
    const s = h.socket();
    s.frame("snapshot", { board: BOARD, seq: 5, top_10: [], you: null, total_players: 0 });
    s.frame("score_update", { board: BOARD, seq: 4, top_10: [] }); // older
    s.frame("score_update", { board: BOARD, seq: 6, top_10: [] });
    s.frame("score_update", { board: BOARD, seq: 6, top_10: [] }); // the same again
    s.frame("rank_update", { board: BOARD, seq: 2, rank: 3, previous_rank: null, score: 1 });
    s.frame("rank_update", { board: BOARD, seq: 1, rank: 4, previous_rank: 3, score: 1 });
    s.frame("score_update", { board: "another-board", seq: 99, top_10: [] });
    s.frame("ack", { request_id: "nobody", seq: 100 });
    s.frame("pong", { t: 1 });
    s.status({ user_count: 4 });
    s.onmessage({ data: "not json" });
    s.onmessage({ data: "[1, 2]" });
    assert.deepEqual(h.frameTypes(), [
      "connection_status:-",
      "snapshot:5",
      "score_update:6",
      "rank_update:2",
      "connection_status:-",
    ]);
  });

  test("an older seq after a reconnect is not delivered either", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().frame("score_update", { board: BOARD, seq: 10, top_10: [] });
    h.socket().serverClose(1001);
    await h.clock.advance(1000);
    h.socket().status();
    h.socket().frame("snapshot", { board: BOARD, seq: 10, top_10: [], you: null });
    h.socket().frame("snapshot", { board: BOARD, seq: 9, top_10: [], you: null });
    h.socket().frame("score_update", { board: BOARD, seq: 11, top_10: [] });
    assert.deepEqual(h.frameTypes(), [
      "connection_status:-",
      "score_update:10",
      "connection_status:-",
      "score_update:11",
    ]);
  });
});

describe("reconnecting", () => {
  test("retryInS counts down once a second while waiting", async () => {
    const h = await harness();
    await goLive(h);
    // Drops of a live socket: waits of up to 1 s, 2 s, then 4 s.
    for (const wait of [1000, 2000]) {
      h.socket().serverClose(1006);
      await h.clock.advance(wait);
      h.socket().status();
    }
    h.states.length = 0;
    h.socket().serverClose(1013);
    await h.clock.advance(4000);
    assert.deepEqual(h.states, [
      ["reconnecting", { reason: "overloaded", retryInS: 4 }],
      ["reconnecting", { reason: "overloaded", retryInS: 3 }],
      ["reconnecting", { reason: "overloaded", retryInS: 2 }],
      ["reconnecting", { reason: "overloaded", retryInS: 1 }],
      ["reconnecting", { reason: "overloaded" }], // the attempt itself
    ]);
    assert.equal(h.sockets.length, 4);
  });

  test("the first retry comes within 0.5-1 s", async () => {
    for (const [random, wait] of [
      [() => 0, 500],
      [() => 0.75, 750],
      [ALMOST_ONE, 1000],
    ]) {
      const h = await harness({ random });
      h.socket().serverClose(1006);
      await h.clock.advance(wait - 1);
      assert.equal(h.sockets.length, 1);
      await h.clock.advance(1);
      assert.equal(h.sockets.length, 2, `random ${random()}`);
    }
  });

  test("a minute live resets the backoff", async () => {
    const h = await harness();
    await goLive(h);
    for (const wait of [1000, 2000, 4000]) {
      h.socket().serverClose(1006);
      await h.clock.advance(wait);
      h.socket().status();
    }
    await h.clock.advance(60_000);
    h.socket().serverClose(1001);
    await h.clock.advance(1000);
    assert.equal(h.sockets.length, 5, "reconnected within 1 s again");
  });

  test("a missing pong within 10 s closes the socket and reconnects", async () => {
    const h = await harness();
    await goLive(h);
    const s = h.socket();
    await h.clock.advance(25_000);
    assert.deepEqual(s.sentOf("ping"), [{ type: "ping", data: { t: 25_000 } }]);
    s.frame("pong", { t: 25_000, server_time: "…" });
    await h.clock.advance(25_000);
    assert.equal(s.sentOf("ping").length, 2);
    await h.clock.advance(9_999);
    assert.equal(h.live.state, "live");
    assert.equal(s.closedWith, null);
    await h.clock.advance(1);
    assert.deepEqual(s.closedWith, { code: 1000, reason: "no pong" });
    assert.deepEqual(h.state(), ["reconnecting", { reason: "heartbeat", retryInS: 1 }]);
    await h.clock.advance(1000);
    assert.equal(h.sockets.length, 2);
    assert.ok(h.socket().url.endsWith("&reconnect=1"));
    s.frame("pong", {}); // a late pong from the old socket changes nothing
    h.socket().status();
    assert.equal(h.live.state, "live");
  });

  test("the ping interval comes from connection_status", async () => {
    const h = await harness();
    h.socket().status({ heartbeat_interval: 5 });
    await h.clock.advance(15_000);
    assert.equal(h.socket().sentOf("ping").length, 3);
  });

  test("a 1000 close from the server is retried too", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().serverClose(1000);
    await h.clock.advance(1000);
    assert.equal(h.sockets.length, 2);
  });

  test("retryNow skips the wait", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().serverClose(1006);
    assert.equal(h.sockets.length, 1);
    h.live.retryNow();
    await settle();
    assert.equal(h.sockets.length, 2);
    await h.clock.advance(5000);
    assert.equal(h.sockets.length, 2, "the old timer does not fire another attempt");
  });
});

describe("stopping", () => {
  test("close 4401 calls onAuthExpired and stops", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().serverClose(4401);
    await settle();
    assert.equal(h.authExpired, 1);
    assert.deepEqual(h.state(), ["offline", { reason: "auth" }]);
    await h.clock.advance(120_000);
    assert.equal(h.sockets.length, 1);
    assert.equal(h.fetches.length, 0);
  });

  test("an error frame token_expired calls onAuthExpired and closes the socket", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().frame("error", { code: "token_expired", message: "Token expired" });
    assert.equal(h.authExpired, 1);
    assert.equal(h.live.state, "offline");
    assert.notEqual(h.socket().closedWith, null);
    h.socket().serverClose(4401); // the close that follows is not reported twice
    assert.equal(h.authExpired, 1);
  });

  test("close 4403 stops without a retry and without log-in", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().serverClose(4403);
    assert.deepEqual(h.state(), ["offline", { reason: "forbidden" }]);
    assert.equal(h.authExpired, 0);
    await h.clock.advance(120_000);
    assert.equal(h.sockets.length, 1);
  });

  test("an unknown board: offline not_found", async () => {
    const h = await harness();
    await goLive(h);
    h.socket().frame("error", { code: "not_found", message: "no board" });
    assert.deepEqual(h.state(), ["offline", { reason: "not_found" }]);
  });

  test("close() stops everything and rejects waiting submissions", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 1, requestId: "r-close" });
    await settle();
    h.live.close();
    assert.deepEqual(h.state(), ["offline", { reason: "closed" }]);
    assert.deepEqual(h.socket().closedWith, { code: 1000, reason: "closed" });
    await assert.rejects(result, { code: "closed" });
    await h.clock.advance(300_000);
    assert.equal(h.sockets.length, 1);
    assert.equal(h.clock.timers.size, 0, "no timer left behind");
    h.live.retryNow();
    await settle();
    assert.equal(h.sockets.length, 1, "retryNow cannot revive a closed client");
    await assert.rejects(h.live.submit({ score: 2 }), { code: "closed" });
  });

  test("a page that closes the client from onAuthExpired", async () => {
    const h = await harness({ callbacks: { onAuthExpired: (hh) => hh.live.close() } });
    await goLive(h);
    h.socket().serverClose(4401);
    assert.equal(h.authExpired, 1);
    assert.deepEqual(h.state(), ["offline", { reason: "closed" }]);
  });

  test("a throwing page callback does not break the client", async (t) => {
    const errors = t.mock.method(console, "error", () => {});
    const h = await harness({
      callbacks: {
        onState: () => {
          throw new Error("page bug");
        },
      },
    });
    await goLive(h);
    assert.ok(errors.mock.callCount() >= 2);
  });
});

describe("the long-poll fallback", () => {
  test("three failed attempts lead to polling, and a background WebSocket back to live", async () => {
    const h = await harness();
    await failThreeTimes(h);
    assert.equal(h.sockets.length, 3);
    assert.equal(h.live.state, "reconnecting");
    const [first] = h.polls();
    assert.equal(
      first.url,
      "https://scores.example/api/boards/weekly-quiz/updates?since=0&timeout=0",
    );
    assert.equal(first.init.headers.Authorization, `Bearer ${TOKEN}`);
    first.respond(200, { board: BOARD, seq: 3, top_10: [], you: null });
    await settle();
    assert.deepEqual(h.state(), ["polling", { reason: "websocket_failed" }]);
    assert.deepEqual(h.frames.at(-1), {
      type: "snapshot",
      data: { board: BOARD, seq: 3, top_10: [], you: null },
    });
    assert.ok(h.polls()[1].url.endsWith("?since=3&timeout=25"));
    h.polls()[1].respond(200, { board: BOARD, seq: 3, top_10: [], you: null }); // unchanged
    await settle();
    assert.equal(h.frames.length, 1, "an answer with the same seq is not delivered");
    h.polls()[2].respond(200, { board: BOARD, seq: 8, top_10: [], you: null, total_players: 2 });
    await settle();
    assert.equal(h.frames.at(-1).data.total_players, 2);
    assert.ok(h.polls()[3].url.endsWith("?since=8&timeout=25"));

    await h.clock.advance(5000); // the first background attempt comes within 5 s
    assert.equal(h.sockets.length, 4);
    assert.equal(h.live.state, "polling");
    h.socket().status();
    assert.deepEqual(h.state(), ["live", {}]);
    assert.equal(h.polls()[3].aborted, true, "the poll in flight is aborted");
    await h.clock.advance(60_000);
    assert.equal(h.polls().length, 4, "no polls while live");
    h.socket().frame("score_update", { board: BOARD, seq: 8, top_10: [] });
    h.socket().frame("score_update", { board: BOARD, seq: 9, top_10: [] });
    assert.deepEqual(h.frameTypes().slice(-2), ["connection_status:-", "score_update:9"]);
  });

  test("background attempts that fail leave polling alone and slow down", async () => {
    const h = await harness();
    await failThreeTimes(h);
    h.polls()[0].respond(200, { board: BOARD, seq: 1, top_10: [], you: null });
    await h.clock.advance(5000);
    assert.equal(h.sockets.length, 4);
    h.socket().fail();
    await h.clock.advance(9_999);
    assert.equal(h.sockets.length, 4);
    await h.clock.advance(1);
    assert.equal(h.sockets.length, 5, "the second one 10 s later");
    h.polls()[1].respond(200, { board: BOARD, seq: 1, top_10: [], you: null }); // unchanged
    h.socket().serverClose(1006);
    await h.clock.advance(20_000);
    assert.equal(h.sockets.length, 6, "then every 20 s at most");
    assert.equal(h.live.state, "polling");
    assert.equal(h.polls().length, 3, "the long-poll loop goes on by itself");
    assert.equal(h.polls().filter((p) => p.aborted).length, 0);
  });

  test("without WebSocket it polls from the start", async () => {
    const h = await harness({ webSocket: false });
    assert.equal(h.sockets.length, 0);
    assert.equal(h.polls().length, 1);
    h.polls()[0].respond(200, { board: BOARD, seq: 0, top_10: [], you: null });
    await settle();
    assert.deepEqual(h.states, [
      ["connecting", {}],
      ["polling", { reason: "websocket_unavailable" }],
    ]);
    assert.deepEqual(h.frameTypes(), ["snapshot:0"]);
    await h.clock.advance(60_000);
    assert.equal(h.sockets.length, 0);
  });

  test("anonymous polls carry no Authorization header", async () => {
    const h = await harness({ webSocket: false, token: null });
    assert.equal(h.polls()[0].init.headers.Authorization, undefined);
  });

  test("a failing poll backs off, honours Retry-After, then polls again", async () => {
    const h = await harness({ webSocket: false });
    h.polls()[0].failNetwork();
    await settle();
    assert.deepEqual(h.state(), ["reconnecting", { reason: "poll_failed", retryInS: 1 }]);
    await h.clock.advance(1000);
    assert.equal(h.polls().length, 2);
    h.polls()[1].respond(503, { code: "not_ready" }, { "Retry-After": "3" });
    await h.clock.advance(2999);
    assert.equal(h.polls().length, 2);
    await h.clock.advance(1);
    assert.equal(h.polls().length, 3);
    h.polls()[2].respond(200, { board: BOARD, seq: 1, top_10: [], you: null });
    await settle();
    assert.equal(h.live.state, "polling");
  });

  test("a long-poll that never answers is given up", async () => {
    const h = await harness({ webSocket: false });
    h.polls()[0].respond(200, { board: BOARD, seq: 1, top_10: [], you: null });
    await settle();
    await h.clock.advance(35_000);
    assert.equal(h.polls()[1].aborted, true);
    assert.equal(h.live.state, "reconnecting");
  });

  test("401 while polling calls onAuthExpired", async () => {
    const h = await harness({ webSocket: false });
    h.polls()[0].respond(401, { code: "auth_failed", status: 401 });
    await settle();
    assert.equal(h.authExpired, 1);
    assert.deepEqual(h.state(), ["offline", { reason: "auth" }]);
  });

  test("404 while polling: offline not_found", async () => {
    const h = await harness({ webSocket: false });
    h.polls()[0].respond(404, { code: "not_found", status: 404 });
    await settle();
    assert.deepEqual(h.state(), ["offline", { reason: "not_found" }]);
    assert.equal(h.authExpired, 0);
  });
});

describe("submit", () => {
  test("over the live socket, resolving on its ack", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 1200, subscore: 3, metadata: { q: 7 }, requestId: "r-1" });
    await settle();
    assert.deepEqual(h.socket().sentOf("submit_score"), [
      {
        type: "submit_score",
        data: { board: BOARD, score: 1200, subscore: 3, metadata: { q: 7 }, request_id: "r-1" },
      },
    ]);
    const ack = { request_id: "r-1", board: BOARD, user_id: "alice", score: 1200, rank: 1 };
    h.socket().frame("ack", { ...ack, request_id: "someone-else" });
    h.socket().frame("ack", ack);
    assert.deepEqual(await result, ack);
    assert.equal(h.fetches.length, 0);
  });

  test("optional fields are left out", async () => {
    const h = await harness();
    await goLive(h);
    void h.live.submit({ score: 5, requestId: "r-2" });
    await settle();
    assert.deepEqual(h.socket().sentOf("submit_score")[0].data, {
      board: BOARD,
      score: 5,
      request_id: "r-2",
    });
  });

  test("rejects on an error frame with its request_id", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 5, requestId: "r-3" });
    await settle();
    h.socket().frame("error", {
      code: "rate_limited",
      message: "Too many submissions",
      request_id: "r-3",
      retry_after: 0.25,
    });
    const err = await result.catch((e) => e);
    assert.ok(err instanceof ScoreboardError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, "rate_limited");
    assert.equal(err.message, "Too many submissions");
    assert.equal(err.retryAfter, 0.25);
    assert.equal(h.live.state, "live", "a refused submission does not touch the connection");
  });

  test("is resent over the next connection after a drop, with the same request_id", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 9, requestId: "r-4" });
    await settle();
    assert.equal(h.sockets[0].sentOf("submit_score").length, 1);
    h.sockets[0].serverClose(1006);
    await h.clock.advance(1000);
    assert.equal(h.sockets.length, 2);
    assert.equal(h.sockets[1].sentOf("submit_score").length, 0, "not before it is live");
    h.sockets[1].status();
    assert.deepEqual(h.sockets[1].sentOf("submit_score").map((m) => m.data.request_id), ["r-4"]);
    h.sockets[1].frame("ack", { request_id: "r-4", score: 9 });
    assert.deepEqual(await result, { request_id: "r-4", score: 9 });
  });

  test("a resent submission that meets its first copy still running is tried again", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 9, requestId: "r-5" });
    await settle();
    h.sockets[0].serverClose(1006);
    await h.clock.advance(1000);
    h.sockets[1].status();
    h.sockets[1].frame("error", { code: "conflict", message: "in flight", request_id: "r-5" });
    await h.clock.advance(1000);
    assert.equal(h.sockets[1].sentOf("submit_score").length, 2);
    h.sockets[1].frame("ack", { request_id: "r-5", score: 9 });
    assert.equal((await result).score, 9);
  });

  test("while polling goes over HTTP with an Idempotency-Key", async () => {
    const h = await harness({ webSocket: false });
    h.polls()[0].respond(200, { board: BOARD, seq: 1, top_10: [], you: null });
    await settle();
    const result = h.live.submit({ score: 1500, requestId: "r-6" });
    await settle();
    const [post] = h.posts();
    assert.equal(post.url, "https://scores.example/api/boards/weekly-quiz/scores");
    assert.equal(post.init.headers["Content-Type"], "application/json");
    assert.equal(post.init.headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(post.init.headers["Idempotency-Key"], "r-6");
    assert.deepEqual(JSON.parse(post.init.body), { score: 1500 });
    const body = { board: BOARD, user_id: "alice", score: 1500, rank: 1, seq: 2 };
    post.respond(200, body);
    assert.deepEqual(await result, body);
  });

  test("an HTTP problem+json rejects with its code, detail and Retry-After", async () => {
    const h = await harness({ webSocket: false });
    const result = h.live.submit({ score: 1, requestId: "r-7" });
    await settle();
    h.posts()[0].respond(
      429,
      { type: "about:blank", title: "Too Many Requests", status: 429, detail: "Slow down", code: "rate_limited" },
      { "Retry-After": "2" },
    );
    await assert.rejects(result, { code: "rate_limited", message: "Slow down", retryAfter: 2 });
  });

  test("an HTTP error without a problem body still rejects with a code", async () => {
    const h = await harness({ webSocket: false });
    const result = h.live.submit({ score: 1, requestId: "r-8" });
    await settle();
    h.posts()[0].respond(502, undefined);
    await assert.rejects(result, { code: "http_502", retryAfter: undefined });
  });

  test("HTTP 401 on a submission rejects and leads to log-in", async () => {
    const h = await harness({ webSocket: false });
    const result = h.live.submit({ score: 1, requestId: "r-9" });
    await settle();
    h.posts()[0].respond(401, { code: "auth_failed", detail: "Authentication failed" });
    await assert.rejects(result, { code: "auth_failed" });
    assert.equal(h.authExpired, 1);
  });

  test("without a token rejects at once with auth_failed", async () => {
    const h = await harness({ token: null });
    await goLive(h);
    await assert.rejects(h.live.submit({ score: 1 }), { code: "auth_failed" });
    assert.equal(h.socket().sentOf("submit_score").length, 0);
    assert.equal(h.posts().length, 0);
  });

  test("rejects with timeout when nothing answers within 15 s", async () => {
    const h = await harness();
    await goLive(h);
    const result = h.live.submit({ score: 1, requestId: "r-10" });
    const outcome = result.catch((e) => e);
    await h.clock.advance(15_000);
    assert.equal((await outcome).code, "timeout");
    h.socket().frame("ack", { request_id: "r-10" }); // too late: ignored
  });

  test("waits up to 5 s for a live socket, then goes over HTTP", async () => {
    const h = await harness();
    const result = h.live.submit({ score: 3, requestId: "r-11" });
    await h.clock.advance(4_999);
    assert.equal(h.posts().length, 0);
    await h.clock.advance(1);
    assert.equal(h.posts().length, 1);
    assert.equal(h.posts()[0].init.headers["Idempotency-Key"], "r-11");
    h.posts()[0].respond(200, { score: 3 });
    assert.deepEqual(await result, { score: 3 });
  });

  test("a submission waiting when the client falls back to polling is posted", async () => {
    const h = await harness();
    h.socket().fail();
    const result = h.live.submit({ score: 4, requestId: "r-12" });
    await h.clock.advance(1000);
    h.socket().serverClose(1006);
    await h.clock.advance(2000);
    h.socket().serverClose(1006);
    await settle();
    assert.equal(h.posts().length, 1);
    h.posts()[0].respond(200, { score: 4 });
    assert.deepEqual(await result, { score: 4 });
  });

  test("the same requestId twice is one submission", async () => {
    const h = await harness();
    await goLive(h);
    const a = h.live.submit({ score: 1, requestId: "same" });
    const b = h.live.submit({ score: 1, requestId: "same" });
    assert.equal(a, b);
    await settle();
    assert.equal(h.socket().sentOf("submit_score").length, 1);
  });

  test("a network failure of the HTTP post rejects with network_error", async () => {
    const h = await harness({ webSocket: false });
    const result = h.live.submit({ score: 1, requestId: "r-13" });
    await settle();
    h.posts()[0].failNetwork();
    await assert.rejects(result, { code: "network_error" });
  });

  test("gets a requestId when none is given", async () => {
    const h = await harness();
    await goLive(h);
    void h.live.submit({ score: 1 });
    await settle();
    const id = h.socket().sentOf("submit_score")[0].data.request_id;
    assert.equal(typeof id, "string");
    assert.ok(id.length >= 1 && id.length <= 255);
  });
});

describe("options", () => {
  test("board is required", () => {
    assert.throws(() => connect({ baseUrl: "http://x" }), TypeError);
    assert.throws(() => connect({ board: "", baseUrl: "http://x" }), TypeError);
  });

  test("a base URL is required outside a browser", () => {
    assert.throws(() => connect({ board: "b", WebSocket: null }), TypeError);
  });

  test("http maps to ws and a path prefix is kept", async () => {
    const urls = [];
    class WS {
      constructor(url) {
        urls.push(url);
      }

      close() {}
    }
    const live = connect({
      board: "a b/c",
      token: null,
      baseUrl: "http://host:8888/prefix/",
      WebSocket: WS,
    });
    await settle();
    live.close();
    assert.deepEqual(urls, ["ws://host:8888/prefix/ws?board=a%20b%2Fc"]);
  });
});
