// static/js/client/backoff.js: reconnect waits with full jitter, the background schedule
// while polling, the stable-minute reset and the countdown. Run: node --test tests/js/
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  backgroundDelayMs,
  backoffDelayMs,
  backoffDelayS,
  isStable,
  MAX_DELAY_S,
  MIN_DELAY_S,
  secondsLeft,
  STABLE_AFTER_MS,
} from "../../static/js/client/backoff.js";

const LOW = () => 0;
const HIGH = () => 0.9999999999999999; // the largest double below 1, as Math.random may give
const MID = () => 0.5;

describe("backoffDelayS: max(0.5, random * min(20, 2^n))", () => {
  test("the first retry waits 0.5-1 s", () => {
    assert.equal(backoffDelayS(0, LOW), 0.5);
    assert.equal(backoffDelayS(0, MID), 0.5);
    assert.ok(backoffDelayS(0, HIGH) < 1);
    assert.ok(backoffDelayS(0, HIGH) > 0.999);
  });

  test("each later attempt doubles the window", () => {
    const expected = [1, 2, 4, 8, 16];
    expected.forEach((span, n) => {
      assert.equal(backoffDelayS(n, LOW), MIN_DELAY_S, `attempt ${n}, random 0`);
      assert.ok(backoffDelayS(n, HIGH) < span, `attempt ${n} stays under ${span} s`);
      assert.ok(backoffDelayS(n, HIGH) > span * 0.999, `attempt ${n} reaches nearly ${span} s`);
      assert.equal(backoffDelayS(n, MID), Math.max(0.5, span / 2));
    });
  });

  test("the window is capped at 20 s", () => {
    for (const n of [5, 6, 10, 50, 1023, 1024, 5000, Number.MAX_SAFE_INTEGER, Infinity]) {
      const wait = backoffDelayS(n, HIGH);
      assert.ok(wait <= MAX_DELAY_S && wait > 19.99, `attempt ${n}: ${wait}`);
      assert.equal(backoffDelayS(n, MID), 10);
      assert.equal(backoffDelayS(n, LOW), 0.5);
    }
  });

  test("odd attempt counts are read as 0", () => {
    for (const n of [-1, -Infinity, NaN, undefined, null, "3"]) {
      assert.ok(backoffDelayS(n, HIGH) < 1, String(n));
    }
    assert.equal(backoffDelayS(2.7, HIGH) < 4, true); // fractions round down
  });

  test("a random source outside [0, 1) cannot stretch the wait past the cap", () => {
    assert.equal(backoffDelayS(10, () => 7), 20);
    assert.equal(backoffDelayS(0, () => 1), 1);
    assert.equal(backoffDelayS(3, () => -1), 0.5);
    assert.equal(backoffDelayS(3, () => NaN), 0.5);
  });

  test("many draws stay within bounds and use the whole window (full jitter)", () => {
    for (let n = 0; n < 8; n += 1) {
      const span = Math.min(20, 2 ** n);
      const waits = Array.from({ length: 2000 }, () => backoffDelayS(n));
      assert.ok(waits.every((w) => w >= 0.5 && w < span), `attempt ${n}`);
      if (span >= 4) {
        assert.ok(Math.min(...waits) < span * 0.2, `attempt ${n} also waits briefly`);
        assert.ok(Math.max(...waits) > span * 0.8, `attempt ${n} also waits long`);
      }
    }
  });

  test("defaults to Math.random", () => {
    const wait = backoffDelayS(0);
    assert.ok(wait >= 0.5 && wait < 1);
  });
});

describe("backoffDelayMs", () => {
  test("is the same wait in whole milliseconds", () => {
    assert.equal(backoffDelayMs(0, LOW), 500);
    assert.equal(backoffDelayMs(0, HIGH), 1000); // 999.99... ms rounds to 1000
    assert.equal(backoffDelayMs(3, MID), 4000);
    assert.equal(backoffDelayMs(99, HIGH), 20_000);
    assert.ok(Number.isInteger(backoffDelayMs(4, () => 0.123456789)));
  });
});

describe("backgroundDelayMs: WebSocket retries while polling", () => {
  test("start at 2.5-5 s, then 5-10 s, then 10-20 s for good", () => {
    assert.equal(backgroundDelayMs(0, LOW), 2500);
    assert.equal(backgroundDelayMs(0, HIGH), 5000);
    assert.equal(backgroundDelayMs(1, LOW), 5000);
    assert.equal(backgroundDelayMs(1, HIGH), 10_000);
    for (const n of [2, 3, 10, 1000, Infinity]) {
      assert.equal(backgroundDelayMs(n, LOW), 10_000);
      assert.equal(backgroundDelayMs(n, HIGH), 20_000);
      assert.equal(backgroundDelayMs(n, MID), 15_000);
    }
  });

  test("never hurries and never waits past the cap", () => {
    for (let n = 0; n < 6; n += 1) {
      for (let i = 0; i < 500; i += 1) {
        const ms = backgroundDelayMs(n);
        assert.ok(ms >= 2500 && ms <= 20_000, `${n}: ${ms}`);
      }
    }
  });
});

describe("isStable: the backoff count resets after a minute live", () => {
  test("a minute is the boundary", () => {
    assert.equal(STABLE_AFTER_MS, 60_000);
    assert.equal(isStable(1000, 1000 + 59_999), false);
    assert.equal(isStable(1000, 1000 + 60_000), true);
    assert.equal(isStable(1000, 1000 + 3_600_000), true);
  });

  test("not live is never stable", () => {
    assert.equal(isStable(null, 10 ** 12), false);
  });
});

describe("secondsLeft: the reconnecting countdown", () => {
  test("rounds up to whole seconds and stops at 0", () => {
    assert.equal(secondsLeft(10_000, 0), 10);
    assert.equal(secondsLeft(10_000, 1), 10);
    assert.equal(secondsLeft(10_000, 999), 10);
    assert.equal(secondsLeft(10_000, 1000), 9);
    assert.equal(secondsLeft(10_000, 9_001), 1);
    assert.equal(secondsLeft(10_000, 10_000), 0);
    assert.equal(secondsLeft(10_000, 12_000), 0);
  });

  test("a sub-second wait still shows 1 s", () => {
    assert.equal(secondsLeft(700, 0), 1);
  });
});
