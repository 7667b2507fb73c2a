/**
 * Frame ordering for the Scoreboard browser client: which incoming frames a page may apply.
 * Pure functions over a small immutable record, so the rule is tested on its own.
 *
 * The protocol numbers every change of a board with `seq`, which only grows (across
 * restarts, reconnects and cluster nodes). Two sequences are kept apart:
 *
 *   - state frames (`snapshot`, `score_update`, and the answers of the long-poll, which the
 *     client hands on as `snapshot`s) carry the whole top 10; a page applies one only if its
 *     seq is strictly higher than the last state frame it applied. The first always applies.
 *   - `rank_update` frames (this user's own rank) have their own sequence, with the same rule.
 *
 * A frame with an equal seq carries nothing new (a fresh snapshot after a reconnect while the
 * board stood still), and an older one would move the page back in time. Reconnecting does
 * not reset the gate: the server's seq never goes back.
 *
 * `connection_status` frames carry no board state and always pass.
 */

/** Frame types whose `seq` is gated against the board's state sequence. */
export const STATE_FRAMES = Object.freeze(["snapshot", "score_update"]);
/** Frame types whose `seq` is gated against this user's own rank sequence. */
export const RANK_FRAMES = Object.freeze(["rank_update"]);
/** Frame types the client hands to the page (anything else is the client's own business). */
export const PAGE_FRAMES = Object.freeze([
  "snapshot",
  "score_update",
  "rank_update",
  "connection_status",
]);

/**
 * @typedef {{ state: number | null, rank: number | null }} SeqGate
 *   the last applied seq of each sequence; null until the first frame of that kind
 */

/** @returns {SeqGate} a gate that has applied nothing yet */
export function createGate() {
  return Object.freeze({ state: null, rank: null });
}

/**
 * Decide whether a page should apply `frame`, and the gate after it.
 *
 * @param {SeqGate} gate
 * @param {{ type: string, data?: any }} frame
 * @returns {{ apply: boolean, gate: SeqGate }} `apply` false leaves the gate unchanged
 */
export function admit(gate, frame) {
  const type = frame && frame.type;
  if (type === "connection_status") return { apply: true, gate };
  const key = STATE_FRAMES.includes(type) ? "state" : RANK_FRAMES.includes(type) ? "rank" : null;
  if (key === null) return { apply: false, gate }; // not a frame for the page
  const seq = frame.data ? frame.data.seq : undefined;
  // A state frame without a usable seq cannot be ordered, so it cannot be trusted either.
  if (typeof seq !== "number" || !Number.isFinite(seq)) return { apply: false, gate };
  const last = gate[key];
  if (last !== null && seq <= last) return { apply: false, gate };
  return { apply: true, gate: Object.freeze({ ...gate, [key]: seq }) };
}

/**
 * The `since` of the next long-poll: the last applied state seq, or 0 before any.
 *
 * @param {SeqGate} gate
 * @returns {number}
 */
export function pollSince(gate) {
  return gate.state === null ? 0 : gate.state;
}

/**
 * Turn a long-poll answer `{board, seq, top_10, you, total_players?}` into the `snapshot`
 * frame the page receives over the WebSocket, so that a page handles one shape only.
 *
 * @param {any} answer
 * @returns {{ type: "snapshot", data: object }}
 */
export function pollAnswerToFrame(answer) {
  const data = {
    board: answer.board,
    seq: answer.seq,
    top_10: Array.isArray(answer.top_10) ? answer.top_10 : [],
    you: answer.you ?? null,
  };
  if (answer.total_players !== undefined) data.total_players = answer.total_players;
  return { type: "snapshot", data };
}
