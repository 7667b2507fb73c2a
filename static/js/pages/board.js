// The board page (and its kiosk view): makes the server-rendered standings live.
// The connection itself belongs to scoreboard-client.js; this file only draws what it hears.

import { connect } from "../scoreboard-client.js";
import { formatScore } from "../format.js";
import { parseScoreInput } from "../score-input.js";
import { renderRows, changedUsers } from "../standings.js";
import { addObservation, drawLines } from "../chart.js";
import {
  api,
  count,
  goToLogin,
  pageData,
  reducedMotion,
  seasonLink,
  sessionToken,
} from "./common.js";

const AROUND_RADIUS = 2;
const AROUND_REFRESH_MS = 400; // coalesces the around-me reads of a burst of rank changes
const CHART_REDRAW_MS = 10_000; // the chart's time axis creeps on even when nobody scores

const data = pageData();
const board = data.board;
const scoreFormat = board.score_format;
const me = data.user ? data.user.user_id : null;
const page = document.getElementById("board-page");
const list = document.getElementById("top10");
const emptyNote = document.getElementById("empty-board");
const indicator = document.getElementById("indicator");
const youLine = document.getElementById("you-line");
const aroundList = document.getElementById("around");
const gapLine = document.getElementById("gap");
const totalNode = document.getElementById("total-players");
const userCount = document.getElementById("user-count");
const chartSvg = document.getElementById("top-chart");
const chartLegend = document.getElementById("chart-legend");

let top = data.top_10;
let you = data.you;
let total = data.total_players;
let series = addObservation({}, top, Date.now());
let token = null;

// -- the connection indicator: a dot and a word, never colour alone -------------------------

const retryButton = indicator.querySelector(".retry");
const label = indicator.querySelector(".label");

function showState(state, info = {}) {
  indicator.dataset.state = state;
  const words = {
    connecting: "connecting…",
    live: "live",
    polling: "polling",
    offline: "offline",
  };
  if (state !== "reconnecting") label.textContent = words[state];
  else if (info.retryInS === undefined) label.textContent = "reconnecting…"; // an attempt is under way
  else label.textContent = `reconnecting in ${Math.max(0, info.retryInS)}s`;
  retryButton.hidden = !(state === "offline" || state === "reconnecting") || info.reason === "auth";
  page.classList.toggle("is-stale", state === "reconnecting" || state === "offline");
}

// -- standings, your card, the chart -----------------------------------------------------------

function drawTop(highlight = new Set()) {
  renderRows(list, top, { scoreFormat, me, animate: !reducedMotion(), highlight });
  emptyNote.hidden = top.length > 0;
}

function drawChart() {
  if (chartSvg) drawLines(chartSvg, chartLegend, series, { now: Date.now(), invert: board.order === "asc" });
}

const announcer = document.getElementById("you-announce");
let announced = null; // rank|score last announced: screen readers hear real changes only

function drawYou(previousRank = null) {
  if (totalNode) totalNode.textContent = count(total);
  if (!youLine) return;
  youLine.replaceChildren();
  if (!you) {
    youLine.textContent = "No score yet on this board.";
    return;
  }
  const rank = document.createElement("strong");
  rank.className = "num";
  rank.textContent = `#${you.rank}`;
  const score = formatScore(you.score, scoreFormat);
  youLine.append(rank, ` of ${count(total)} · ${score}`);
  let moved = "";
  if (previousRank && previousRank !== you.rank) {
    const up = you.rank < previousRank;
    const steps = Math.abs(previousRank - you.rank);
    const delta = document.createElement("span");
    delta.className = `delta ${up ? "up" : "down"}`;
    delta.textContent = ` ${up ? "↑" : "↓"}${steps}`;
    youLine.append(delta);
    moved = `, ${up ? "up" : "down"} ${steps}`;
  }
  const key = `${you.rank}|${you.score}`;
  if (announced !== null && key !== announced) {
    announcer.textContent = `You are now number ${you.rank} with ${score}${moved}.`;
  }
  announced = key;
}

function drawAround(entries) {
  if (!aroundList) return;
  renderRows(aroundList, entries, { scoreFormat, me, animate: false });
  const index = entries.findIndex((e) => e.user_id === me);
  const above = index > 0 ? entries[index - 1] : null;
  const below = index >= 0 ? entries[index + 1] : null;
  if (above) {
    const gap = Math.abs(above.score - entries[index].score);
    gapLine.textContent = `${formatScore(gap, scoreFormat)} to #${above.rank}`;
  } else if (index === 0 && below) {
    gapLine.textContent = `You lead by ${formatScore(Math.abs(entries[0].score - below.score), scoreFormat)}`;
  } else {
    gapLine.textContent = "";
  }
}

let aroundTimer = null;

function refreshAround() {
  if (!me || !aroundList) return;
  clearTimeout(aroundTimer);
  aroundTimer = setTimeout(async () => {
    const path = `/api/boards/${encodeURIComponent(board.id)}`;
    try {
      total = (await api("GET", path, { token })).players;
      // Only a player with a score has neighbours; asking for others would be a 404.
      const around = you
        ? await api("GET", `${path}/players/${encodeURIComponent(me)}/around?radius=${AROUND_RADIUS}`, { token })
        : { entries: [] };
      drawAround(around.entries);
      drawYou();
    } catch (error) {
      if (error.status === 404) drawAround([]); // the score or the board went away meanwhile
    }
  }, AROUND_REFRESH_MS);
}

// -- seasons: a reset sends everyone a fresh snapshot; the links to the archives follow ------

const seasonsNav = document.getElementById("seasons-nav");
let seasonsShown = null; // the newest archived season the links show

function when(iso) {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

async function refreshSeasons() {
  if (!seasonsNav) return;
  const path = `/api/boards/${encodeURIComponent(board.id)}`;
  try {
    const [{ seasons }, fresh] = await Promise.all([
      api("GET", `${path}/seasons`, { token }),
      api("GET", path, { token }),
    ]);
    const newest = seasons.length ? seasons[seasons.length - 1].season : 0;
    if (newest === seasonsShown) return;
    seasonsShown = newest;
    const links = document.getElementById("season-links");
    links.replaceChildren(
      ...seasons
        .slice()
        .reverse()
        .map((s) => {
          const item = document.createElement("li");
          const link = seasonLink(board.id, s.season);
          const note = document.createElement("span");
          note.className = "hint-inline";
          note.textContent = ` ended ${when(s.ended_at)} · ${count(s.players)} ${s.players === 1 ? "player" : "players"}`;
          item.append(link, note);
          return item;
        }),
    );
    seasonsNav.hidden = seasons.length === 0;
    const line = document.querySelector(".season-line");
    if (line) {
      line.textContent = `Season ${fresh.season}`;
      if (fresh.next_reset_at) line.append(` · next reset ${when(fresh.next_reset_at)}`);
    }
  } catch {
    // The links stay as they were; the next snapshot tries again.
  }
}

// -- frames ----------------------------------------------------------------------------------

function onFrame({ type, data: frame }) {
  if (type === "connection_status") {
    if (userCount) userCount.textContent = count(frame.user_count);
    return;
  }
  if (type === "snapshot" || type === "score_update") {
    const highlight = changedUsers(top, frame.top_10);
    top = frame.top_10;
    if (type === "snapshot") {
      if (frame.total_players !== undefined) total = frame.total_players;
      if (me) you = frame.you;
      drawYou();
      refreshAround();
      refreshSeasons();
    }
    drawTop(type === "score_update" ? highlight : new Set());
    series = addObservation(series, top, Date.now());
    drawChart();
    return;
  }
  if (type === "rank_update" && me) {
    const previous = you ? you.rank : null;
    you = { ...(you || { user_id: me }), rank: frame.rank, score: frame.score };
    if (frame.rank === null) you = null;
    drawYou(frame.previous_rank ?? previous);
    refreshAround();
  }
}

async function tokenForConnection() {
  if (!me) return null; // an anonymous viewer (the server allows anonymous reads)
  token = await sessionToken();
  return token;
}

const live = connect({
  board: board.id,
  token: tokenForConnection,
  onState: showState,
  onFrame,
  onAuthExpired: () => goToLogin({ expired: true }),
});
retryButton.addEventListener("click", () => live.retryNow());
window.addEventListener("pagehide", () => live.close());
// A page restored from the back/forward cache had its connection closed on the way out:
// load it afresh rather than show standings frozen at the moment it was left.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) location.reload();
});

drawYou();
drawChart();
setInterval(drawChart, CHART_REDRAW_MS);

// -- the score form: over the live connection, the value kept and the reason shown on refusal --

const form = document.getElementById("score-form");
if (form) {
  const input = document.getElementById("score-input");
  const preview = document.getElementById("score-preview");
  const errorLine = document.getElementById("score-error");
  const okLine = document.getElementById("score-ok");
  const button = form.querySelector("button[type=submit]");

  input.addEventListener("input", () => {
    const parsed = parseScoreInput(input.value, scoreFormat);
    preview.textContent =
      parsed.ok && input.value.trim() ? `Will post ${formatScore(parsed.value, scoreFormat)}` : "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    okLine.textContent = "";
    const parsed = parseScoreInput(input.value, scoreFormat);
    if (!parsed.ok) {
      errorLine.textContent = parsed.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    errorLine.textContent = "";
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    try {
      const result = await live.submit({ score: parsed.value, requestId: newRequestId() });
      okLine.textContent = result.improved
        ? `Saved: you are #${result.rank}.`
        : `Saved, but your standing is unchanged (#${result.rank}, ${formatScore(result.score, scoreFormat)}).`;
      input.value = "";
      preview.textContent = "";
    } catch (error) {
      if (error.code === "auth_failed" || error.code === "token_expired") {
        goToLogin({ expired: true });
        return;
      }
      const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter)} s.` : "";
      errorLine.textContent = `${error.message || "The score was not saved."}${wait}`;
      input.setAttribute("aria-invalid", "true");
    } finally {
      button.disabled = false;
    }
  });
}

function newRequestId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
