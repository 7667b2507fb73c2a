import { test } from "node:test";
import assert from "node:assert/strict";
import { addObservation, extent, toPolyline, MAX_POINTS } from "../../static/js/chart.js";
import { changedUsers } from "../../static/js/standings.js";

const top = (...pairs) => pairs.map(([user_id, score], i) => ({ rank: i + 1, user_id, name: user_id, score }));

test("the chart follows the current top players and keeps only score changes", () => {
  let series = addObservation({}, top(["a", 10], ["b", 5]), 1000, 2);
  series = addObservation(series, top(["a", 10], ["b", 5]), 2000, 2);
  assert.deepEqual(series.a.points, [[1000, 10]]);
  series = addObservation(series, top(["b", 20], ["a", 10], ["c", 1]), 3000, 2);
  assert.deepEqual(Object.keys(series), ["b", "a"]);
  assert.deepEqual(series.b.points, [[1000, 5], [3000, 20]]);
  series = addObservation(series, top(["c", 30], ["b", 20]), 4000, 2);
  assert.deepEqual(Object.keys(series), ["c", "b"]);
  assert.deepEqual(series.c.points, [[4000, 30]]);
});

test("a long session keeps a bounded number of points", () => {
  let series = {};
  for (let i = 0; i < MAX_POINTS * 3; i++) series = addObservation(series, top(["a", i]), i, 1);
  assert.equal(series.a.points.length, MAX_POINTS);
  assert.deepEqual(series.a.points.at(-1), [MAX_POINTS * 3 - 1, MAX_POINTS * 3 - 1]);
});

test("points are drawn as steps inside the box, low values on top when lower is better", () => {
  const range = { t0: 0, t1: 100, min: 0, max: 10, width: 100, height: 100 };
  assert.equal(toPolyline([[0, 0], [50, 10]], range), "0.0,94.0 50.0,94.0 50.0,6.0 100.0,6.0");
  assert.equal(
    toPolyline([[0, 0], [50, 10]], { ...range, invert: true }),
    "0.0,6.0 50.0,6.0 50.0,94.0 100.0,94.0",
  );
  assert.equal(toPolyline([], range), "");
});

test("the extent spans every series up to now", () => {
  assert.deepEqual(extent([[[10, 5]], [[20, -3], [30, 8]]], 50), { t0: 10, t1: 50, min: -3, max: 8 });
  assert.equal(extent([[], []], 50), null);
});

test("rows to highlight: newcomers, movers and changed scores, not the rest", () => {
  const before = top(["a", 30], ["b", 20], ["c", 10]);
  const after = top(["c", 40], ["a", 30], ["b", 20]);
  assert.deepEqual([...changedUsers(before, after)].sort(), ["a", "b", "c"]);
  assert.deepEqual([...changedUsers(before, before)], []);
  const newcomer = [...before, { rank: 4, user_id: "d", name: "d", score: 5 }];
  assert.deepEqual([...changedUsers(before, newcomer)], ["d"]);
});
