import { test } from "node:test";
import assert from "node:assert/strict";
import { parseScoreInput } from "../../static/js/score-input.js";
import { formatScore } from "../../static/js/format.js";

const ok = (value) => ({ ok: true, value });

test("whole numbers, with or without thousands separators", () => {
  assert.deepEqual(parseScoreInput("1240", "integer"), ok(1240));
  assert.deepEqual(parseScoreInput(" 1,240 ", "integer"), ok(1240));
  assert.deepEqual(parseScoreInput("-7", "integer"), ok(-7));
  assert.equal(parseScoreInput("12.5", "integer").ok, false);
  assert.equal(parseScoreInput("abc", "integer").ok, false);
  assert.equal(parseScoreInput("", "integer").message, "Enter a score.");
});

test("decimals are read exactly, never through floating point", () => {
  assert.deepEqual(parseScoreInput("12.34", "decimal:2"), ok(1234));
  assert.deepEqual(parseScoreInput("12.3", "decimal:2"), ok(1230));
  assert.deepEqual(parseScoreInput("12", "decimal:2"), ok(1200));
  assert.deepEqual(parseScoreInput("-0.05", "decimal:2"), ok(-5));
  assert.deepEqual(parseScoreInput("0.1", "decimal:1"), ok(1));
  assert.deepEqual(parseScoreInput("1.000001", "decimal:6"), ok(1000001));
  assert.match(parseScoreInput("1.234", "decimal:2").message, /At most 2 decimals/);
});

test("times are read as the board shows them, or as milliseconds", () => {
  assert.deepEqual(parseScoreInput("1:02.345", "duration_ms"), ok(62345));
  assert.deepEqual(parseScoreInput("1:02.3", "duration_ms"), ok(62300));
  assert.deepEqual(parseScoreInput("59.999", "duration_ms"), ok(59999));
  assert.deepEqual(parseScoreInput("1:00:00.000", "duration_ms"), ok(3600000));
  assert.deepEqual(parseScoreInput("62345", "duration_ms"), ok(62345));
  assert.equal(parseScoreInput("1:75.000", "duration_ms").ok, false);
  assert.equal(parseScoreInput("1:60:00", "duration_ms").ok, false);
  assert.equal(parseScoreInput("fast", "duration_ms").ok, false);
  assert.equal(parseScoreInput("--1:00", "duration_ms").ok, false);
  assert.deepEqual(parseScoreInput("-1:02.345", "duration_ms"), ok(-62345));
});

test("what the board shows reads back to the same score", () => {
  for (const [score, format] of [
    [62345, "duration_ms"], [3600000, "duration_ms"], [123456, "decimal:2"],
    [-5, "decimal:2"], [1234567, "integer"], [9007199254740991, "integer"],
  ]) {
    assert.deepEqual(parseScoreInput(formatScore(score, format), format), ok(score), `${score} ${format}`);
  }
});

test("every case of the shared table reads back to its score", async () => {
  const { readFile } = await import("node:fs/promises");
  const table = new URL("../score_format_cases.json", import.meta.url);
  for (const { score, format, display } of JSON.parse(await readFile(table, "utf8"))) {
    assert.deepEqual(parseScoreInput(display, format), ok(score), `${display} (${format})`);
  }
});

test("numbers past 2^53-1 are refused", () => {
  assert.equal(parseScoreInput("9007199254740992", "integer").ok, false);
});
