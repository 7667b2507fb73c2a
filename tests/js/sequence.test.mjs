// static/js/client/sequence.js: which frames a page may apply (seq ordering), and the
// long-poll answer as a snapshot frame. Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  admit,
  createGate,
  pollAnswerToFrame,
  pollSince,
} from "../../static/js/client/sequence.js";

const frame = (type, seq, extra = {}) => ({ type, data: { board: "b", seq, ...extra } });

/** Feed frames through a fresh gate; return the seqs (type:seq) that were applied. */
function run(frames) {
  let gate = createGate();
  const applied = [];
  for (const f of frames) {
    const verdict = admit(gate, f);
    if (verdict.apply) applied.push(`${f.type}:${f.data?.seq}`);
    else assert.equal(verdict.gate, gate, "a refused frame leaves the gate as it was");
    gate = verdict.gate;
  }
  return { applied, gate };
}

describe("state frames: snapshot and score_update share one sequence", () => {
  test("the first frame always applies, whatever its seq", () => {
    for (const seq of [0, 1, 57, 2 ** 53 - 1]) {
      assert.deepEqual(run([frame("snapshot", seq)]).applied, [`snapshot:${seq}`]);
      assert.deepEqual(run([frame("score_update", seq)]).applied, [`score_update:${seq}`]);
    }
  });

  test("then only a strictly higher seq applies", () => {
    const { applied, gate } = run([
      frame("snapshot", 5),
      frame("score_update", 6),
      frame("score_update", 6), // a duplicate
      frame("score_update", 4), // older
      frame("snapshot", 6), // a fresh snapshot after a reconnect, nothing changed
      frame("snapshot", 9), // seq may skip values
      frame("score_update", 8),
      frame("score_update", 10),
    ]);
    assert.deepEqual(applied, ["snapshot:5", "score_update:6", "snapshot:9", "score_update:10"]);
    assert.equal(gate.state, 10);
  });

  test("a snapshot with an older seq than a score_update is refused too", () => {
    const { applied } = run([frame("score_update", 12), frame("snapshot", 11)]);
    assert.deepEqual(applied, ["score_update:12"]);
  });

  test("a frame without a numeric seq is never applied", () => {
    const { applied } = run([
      { type: "snapshot", data: { board: "b" } },
      frame("snapshot", "3"),
      frame("snapshot", NaN),
      frame("snapshot", null),
      { type: "snapshot" },
      frame("snapshot", 1),
    ]);
    assert.deepEqual(applied, ["snapshot:1"]);
  });
});

describe("rank_update frames have their own sequence", () => {
  test("gated against the last rank_update only", () => {
    const { applied, gate } = run([
      frame("score_update", 20),
      frame("rank_update", 3), // lower than the state seq, but the first rank_update
      frame("rank_update", 3),
      frame("rank_update", 2),
      frame("rank_update", 21),
      frame("score_update", 19), // the state sequence is untouched by rank frames
      frame("score_update", 21),
    ]);
    assert.deepEqual(applied, [
      "score_update:20",
      "rank_update:3",
      "rank_update:21",
      "score_update:21",
    ]);
    assert.deepEqual({ ...gate }, { state: 21, rank: 21 });
  });

  test("a rank_update does not open the state gate", () => {
    const { applied } = run([frame("rank_update", 50), frame("snapshot", 1)]);
    assert.deepEqual(applied, ["rank_update:50", "snapshot:1"]);
  });
});

describe("other frames", () => {
  test("connection_status always passes and changes nothing", () => {
    let gate = createGate();
    gate = admit(gate, frame("snapshot", 4)).gate;
    for (let i = 0; i < 3; i += 1) {
      const verdict = admit(gate, { type: "connection_status", data: { user_count: i } });
      assert.equal(verdict.apply, true);
      assert.equal(verdict.gate, gate);
    }
  });

  test("frames that are not for the page are not applied", () => {
    for (const type of ["ack", "pong", "error", "surprise", undefined]) {
      assert.equal(admit(createGate(), frame(type, 1)).apply, false, String(type));
    }
    assert.equal(admit(createGate(), null).apply, false);
  });
});

describe("gates are values", () => {
  test("admit never changes the gate it was given", () => {
    const gate = createGate();
    const next = admit(gate, frame("snapshot", 3)).gate;
    assert.deepEqual({ ...gate }, { state: null, rank: null });
    assert.deepEqual({ ...next }, { state: 3, rank: null });
    assert.ok(Object.isFrozen(gate) && Object.isFrozen(next));
  });
});

describe("long-poll helpers", () => {
  test("pollSince is the last applied state seq, 0 before any", () => {
    let gate = createGate();
    assert.equal(pollSince(gate), 0);
    gate = admit(gate, frame("rank_update", 8)).gate;
    assert.equal(pollSince(gate), 0);
    gate = admit(gate, frame("score_update", 7)).gate;
    assert.equal(pollSince(gate), 7);
  });

  test("an answer becomes a snapshot frame", () => {
    const entry = { rank: 1, user_id: "a", name: "A", score: 3, subscore: 0, updated_at: "x" };
    assert.deepEqual(
      pollAnswerToFrame({ board: "b", seq: 4, top_10: [entry], you: entry }),
      { type: "snapshot", data: { board: "b", seq: 4, top_10: [entry], you: entry } },
    );
    assert.deepEqual(
      pollAnswerToFrame({ board: "b", seq: 4, top_10: [], you: null, total_players: 12 }).data,
      { board: "b", seq: 4, top_10: [], you: null, total_players: 12 },
    );
    assert.deepEqual(pollAnswerToFrame({ board: "b", seq: 0 }).data, {
      board: "b",
      seq: 0,
      top_10: [],
      you: null,
    });
  });
});
