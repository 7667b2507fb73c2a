// Renders a list of leaderboard rows and animates rank changes (FLIP): measure where each row
// was, put the rows in their new order, then slide each from its old place to the new one with
// a transform. Rows are keyed by user id, so a row that moves is the same element and keeps its
// focus and highlight; under prefers-reduced-motion rows simply jump.

import { formatScore } from "./format.js";

const SLIDE_MS = 360; // long enough for the eye to follow one row, short enough to read scores
const COUNT_UP_MS = 400;

/**
 * Which users' rows should be highlighted after going from `before` to `after` (pure):
 * a player who is new to the list, moved to another rank, or whose score changed.
 */
export function changedUsers(before, after) {
  const old = new Map(before.map((e) => [e.user_id, e]));
  const changed = new Set();
  for (const entry of after) {
    const was = old.get(entry.user_id);
    if (!was || was.rank !== entry.rank || was.score !== entry.score) changed.add(entry.user_id);
  }
  return changed;
}

function buildRow(entry) {
  const row = document.createElement("li");
  row.dataset.user = entry.user_id;
  const rank = document.createElement("span");
  rank.className = "rank num";
  const name = document.createElement("span");
  name.className = "name";
  const score = document.createElement("span");
  score.className = "score num";
  row.append(rank, name, score);
  return row;
}

/**
 * Count a score cell up (or down) from `from` to `to`. While it runs the cell carries
 * `data-counting`, so a test or a screenshot can wait for the final figure. A hidden page
 * gets no animation frames, so there the final figure is shown at once.
 */
function countUp(node, from, to, scoreFormat) {
  if (document.hidden) {
    node.textContent = formatScore(to, scoreFormat);
    return;
  }
  const start = performance.now();
  node.dataset.counting = "";
  const step = (now) => {
    if (node.dataset.score !== String(to)) return; // a newer score took over this cell
    const share = Math.min(1, (now - start) / COUNT_UP_MS);
    const value = share >= 1 ? to : Math.round(from + (to - from) * share);
    node.textContent = formatScore(value, scoreFormat);
    if (share < 1) requestAnimationFrame(step);
    else delete node.dataset.counting;
  };
  requestAnimationFrame(step);
}

/**
 * Make the <ol> `list` show `entries` (each {rank, user_id, name, score}), animating moves.
 * @param {{scoreFormat: string, me?: string|null, animate: boolean, highlight?: Set<string>}} options
 */
export function renderRows(list, entries, { scoreFormat, me = null, animate, highlight = new Set() }) {
  const existing = new Map([...list.children].map((row) => [row.dataset.user, row]));
  const before = new Map();
  if (animate) for (const [user, row] of existing) before.set(user, row.getBoundingClientRect().top);

  const rows = entries.map((entry) => {
    const row = existing.get(entry.user_id) || buildRow(entry);
    existing.delete(entry.user_id);
    const podium = entry.rank <= 3 ? ` podium-${entry.rank}` : "";
    row.className = `row${podium}${entry.user_id === me ? " me" : ""}`;
    row.querySelector(".rank").textContent = String(entry.rank);
    row.querySelector(".name").textContent = entry.name;
    const score = row.querySelector(".score");
    const old = score.dataset.score === undefined ? null : Number(score.dataset.score);
    score.dataset.score = String(entry.score);
    if (animate && old !== null && old !== entry.score) countUp(score, old, entry.score, scoreFormat);
    else {
      delete score.dataset.counting; // a count-up still running for this cell ends here
      score.textContent = formatScore(entry.score, scoreFormat);
    }
    return row;
  });
  list.replaceChildren(...rows);

  for (const row of rows) {
    const user = row.dataset.user;
    if (highlight.has(user)) {
      row.classList.remove("moved");
      void row.offsetWidth; // restart the highlight animation on a row that moves again
      row.classList.add("moved");
    }
    if (!animate || !before.has(user)) continue;
    const dy = before.get(user) - row.getBoundingClientRect().top;
    if (!dy) continue;
    row.classList.remove("moving");
    row.style.transform = `translateY(${dy}px)`;
    void row.offsetWidth; // apply the old offset before the transition starts
    row.classList.add("moving");
    row.style.transform = "";
    const done = () => {
      row.classList.remove("moving");
      row.removeEventListener("transitionend", done);
    };
    row.addEventListener("transitionend", done);
    setTimeout(done, SLIDE_MS + 100);
  }
}
