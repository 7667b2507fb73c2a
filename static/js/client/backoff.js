/**
 * Reconnect timing for the Scoreboard browser client: pure functions, no timers, no globals
 * (the random source is passed in), so that Node's test runner can check every bound.
 *
 * Foreground reconnects use exponential backoff with full jitter: attempt n (the 0-based
 * count of consecutive failures or drops) waits
 *
 *     max(0.5 s, random() * min(20 s, 1 s * 2^n))
 *
 * so the first retry comes after 0.5-1 s, the next after 0.5-2 s, 0.5-4 s, ... and never
 * later than 20 s. Full jitter spreads the clients of a restarted server over the whole
 * window instead of letting them return in waves. The count starts again from 0 once a
 * connection has stayed up for a minute.
 *
 * While the client falls back to long-polling it keeps trying the WebSocket in the
 * background on a slower, separate schedule (see `backgroundDelayMs`).
 */

export const BASE_DELAY_S = 1; // the protocol: the first retry comes within 0.5-1 s
export const MIN_DELAY_S = 0.5; // the protocol: never retry sooner than half a second
export const MAX_DELAY_S = 20; // the protocol: no wait is longer than 20 s
export const STABLE_AFTER_MS = 60_000; // the protocol: a minute up resets the backoff

// Background WebSocket retries while polling: the poll already keeps the page current, so
// there is no hurry; start at 5 s and double up to the same 20 s cap.
export const BACKGROUND_BASE_S = 5;

// 2^n is exact up to n = 1023 and Infinity above; stopping at 30 keeps it an ordinary
// number well past the cap.
const MAX_EXPONENT = 30;

/**
 * The full-jitter wait before foreground attempt `attempt`, in seconds.
 *
 * @param {number} attempt 0-based count of consecutive failures/drops (negative values
 *   and NaN count as 0)
 * @param {() => number} [random] a source of numbers in [0, 1); Math.random by default
 * @returns {number} seconds, in [MIN_DELAY_S, min(MAX_DELAY_S, BASE_DELAY_S * 2^attempt)]
 */
export function backoffDelayS(attempt, random = Math.random) {
  const spanS = Math.min(MAX_DELAY_S, BASE_DELAY_S * 2 ** exponent(attempt));
  return Math.max(MIN_DELAY_S, clampUnit(random()) * spanS);
}

/**
 * `backoffDelayS` in whole milliseconds (what setTimeout takes).
 *
 * @param {number} attempt
 * @param {() => number} [random]
 * @returns {number}
 */
export function backoffDelayMs(attempt, random = Math.random) {
  return Math.round(backoffDelayS(attempt, random) * 1000);
}

/**
 * The wait before background WebSocket attempt `attempt` while polling, in milliseconds:
 * "equal jitter" over a window of 5 s, 10 s, then 20 s (the cap), i.e. a wait in
 * [window / 2, window): 2.5-5 s, 5-10 s, then 10-20 s for every later try. Half the window
 * is fixed so that a page polling happily is not hammering a WebSocket endpoint that keeps
 * refusing it, and half is random so that many pages do not retry in step.
 *
 * @param {number} attempt 0-based count of background attempts since polling began
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backgroundDelayMs(attempt, random = Math.random) {
  const spanS = Math.min(MAX_DELAY_S, BACKGROUND_BASE_S * 2 ** exponent(attempt));
  return Math.round((spanS / 2 + (clampUnit(random()) * spanS) / 2) * 1000);
}

/**
 * Whether a connection that went live at `liveSinceMs` has been up long enough for the
 * backoff count to start again from 0.
 *
 * @param {number | null} liveSinceMs when the connection went live (null: not live)
 * @param {number} nowMs
 * @returns {boolean}
 */
export function isStable(liveSinceMs, nowMs) {
  return liveSinceMs !== null && nowMs - liveSinceMs >= STABLE_AFTER_MS;
}

/**
 * The whole seconds to show in "reconnecting in Ns" when `deadlineMs` is the moment of the
 * next attempt: rounded up, so the display reaches 0 only when the attempt starts.
 *
 * @param {number} deadlineMs
 * @param {number} nowMs
 * @returns {number}
 */
export function secondsLeft(deadlineMs, nowMs) {
  return Math.max(0, Math.ceil((deadlineMs - nowMs) / 1000));
}

// Not a positive number (NaN, negative, not a number at all) counts as 0; Infinity as the cap.
function exponent(attempt) {
  if (typeof attempt !== "number" || !(attempt > 0)) return 0;
  return Math.min(MAX_EXPONENT, Math.floor(attempt));
}

// A random source that strays outside [0, 1) must not stretch a wait past the cap.
function clampUnit(x) {
  if (!(x > 0)) return 0; // also NaN
  return x >= 1 ? 1 : x;
}
