// static/js/format.js against the shared table tests/score_format_cases.json (the same table
// tests/test_formatting.py checks scoreboard/formatting.py against). Run: node --test tests/js/
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { formatScore, isScoreFormat } from "../../static/js/format.js";

const CASES = JSON.parse(
  readFileSync(new URL("../score_format_cases.json", import.meta.url), "utf8"),
);
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const ACCEPTED = ["integer", "duration_ms", "decimal:1", "decimal:2", "decimal:3",
  "decimal:4", "decimal:5", "decimal:6"];
const REJECTED = ["decimal:0", "decimal:7", "decimal:01", "decimal:", "decimal", "decimal:1.0",
  "decimal: 1", "decimal:-1", "decimal:\uff11", " integer", "integer ", "integer\n", "Integer",
  "INTEGER", "int", "duration", "duration_s", "Duration_ms", "", null, undefined, 5, 0, true,
  2.0, ["integer"], { integer: 1 }, new String("integer")];

test("the table is well formed and has the extremes of every format", () => {
  assert.ok(CASES.length >= 40);
  for (const format of ACCEPTED) {
    const scores = CASES.filter((c) => c.format === format).map((c) => c.score);
    assert.ok(scores.includes(MAX_SAFE) && scores.includes(-MAX_SAFE), format);
  }
  for (const c of CASES) {
    assert.ok(Number.isSafeInteger(c.score), JSON.stringify(c));
    assert.ok(isScoreFormat(c.format), JSON.stringify(c));
  }
});

test("formatScore matches every case of the shared table", () => {
  for (const c of CASES) {
    assert.equal(formatScore(c.score, c.format), c.display, JSON.stringify(c));
  }
});

test("a BigInt score formats like the same Number", () => {
  for (const c of CASES) {
    assert.equal(formatScore(BigInt(c.score), c.format), c.display, JSON.stringify(c));
  }
});

test("isScoreFormat accepts exactly the canonical spellings", () => {
  for (const value of ACCEPTED) {
    assert.equal(isScoreFormat(value), true, value);
  }
  for (const value of REJECTED) {
    assert.equal(isScoreFormat(value), false, String(value));
  }
});

test("formatScore refuses an unknown format", () => {
  for (const value of REJECTED) {
    assert.throws(() => formatScore(1, value), RangeError, String(value));
  }
});

test("formatScore refuses what is not a safe integer", () => {
  for (const score of [1.5, NaN, Infinity, MAX_SAFE + 1, -MAX_SAFE - 1, "1", null, true]) {
    assert.throws(() => formatScore(score, "integer"), TypeError, String(score));
  }
});
