// The organiser's page: create, edit, reset and delete boards through the JSON API, remove a
// player's entry, export a board or an archived season, see who is online, and watch the
// server's live figures (GET /api/admin/stats every 2 s) as numbers and five-minute sparklines.

import { drawSparkline } from "../chart.js";
import { formatScore } from "../format.js";
import { api, goToLogin, seasonLink, sessionToken } from "./common.js";

const TOP_PLAYERS_SHOWN = 20; // the manage panel lists the top of a board, each removable

const STATS_EVERY_MS = 2_000;
const SAMPLES_KEPT = 150; // five minutes at one sample every 2 s

let token = null;
const history = { connections: [], users: [], sent: [], received: [] };
const tableBody = document.querySelector("#boards-table tbody");
const boardsError = document.getElementById("boards-error");

async function authed(method, path, body) {
  try {
    return await api(method, path, { token, body });
  } catch (error) {
    if (error.status === 401) {
      token = await sessionToken();
      if (!token) goToLogin({ expired: true });
      return api(method, path, { token, body });
    }
    throw error;
  }
}

// -- live figures --------------------------------------------------------------------------

function setText(id, value) {
  document.getElementById(id).textContent = String(value);
}

function push(samples, value) {
  samples.push(value);
  if (samples.length > SAMPLES_KEPT) samples.shift();
}

function drawStats(stats) {
  setText("stat-connections", stats.connections);
  setText("stat-users", stats.users_online);
  setText("stat-sent", stats.messages_sent_per_s);
  setText("stat-received", stats.messages_received_per_s);
  push(history.connections, stats.connections);
  push(history.users, stats.users_online);
  push(history.sent, stats.messages_sent_per_s);
  push(history.received, stats.messages_received_per_s);
  drawSparkline(document.getElementById("spark-connections"), history.connections);
  drawSparkline(document.getElementById("spark-users"), history.users);
  drawSparkline(document.getElementById("spark-sent"), history.sent);
  drawSparkline(document.getElementById("spark-received"), history.received);
  const users = document.getElementById("top-users");
  users.replaceChildren(
    ...stats.top_users_by_connections.map((u) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = u.user_id;
      const n = document.createElement("span");
      n.className = "num";
      n.textContent = ` ${u.connections}`;
      item.append(name, n);
      return item;
    }),
  );
  document.getElementById("no-users").hidden = stats.top_users_by_connections.length > 0;
  for (const row of tableBody.querySelectorAll("tr[data-board]")) {
    const figures = stats.boards.find((b) => b.id === row.dataset.board);
    if (figures) {
      row.querySelector(".players").textContent = String(figures.players);
      row.querySelector(".subscribers").textContent = String(figures.subscribers);
    }
  }
}

function drawOnline({ users, anonymous }) {
  const list = document.getElementById("online-list");
  list.replaceChildren(
    ...users.map((u) => {
      const item = document.createElement("li");
      const who = document.createElement("span");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = u.name;
      const id = document.createElement("code");
      id.textContent = u.user_id;
      who.append(name, " ", id);
      const n = document.createElement("span");
      n.className = "num";
      n.textContent = String(u.connections);
      const boards = document.createElement("span");
      boards.className = "boards";
      boards.textContent = u.boards.join(", ");
      item.append(who, " ", n, " ", boards);
      return item;
    }),
  );
  document.getElementById("no-online").hidden = users.length > 0;
  document.getElementById("online-anonymous").textContent = anonymous
    ? `${anonymous} anonymous ${anonymous === 1 ? "viewer" : "viewers"}`
    : "";
}

async function pollStats() {
  if (!document.hidden) {
    try {
      drawStats(await authed("GET", "/api/admin/stats"));
      drawOnline(await authed("GET", "/api/admin/online"));
    } catch {
      // The server is away or restarting: the figures stay as they were until it answers.
    }
  }
  setTimeout(pollStats, STATS_EVERY_MS);
}

// -- boards ----------------------------------------------------------------------------------

const RULES = { best: "each player's best counts", set: "the latest score counts", incr: "scores add up" };

function boardRow(board) {
  const row = document.createElement("tr");
  row.dataset.board = board.id;
  const head = document.createElement("th");
  head.scope = "row";
  const link = document.createElement("a");
  link.href = `/boards/${encodeURIComponent(board.id)}`;
  link.textContent = board.title;
  const code = document.createElement("code");
  code.textContent = board.id;
  head.append(link, " ", code);
  const players = cell("num players", String(board.players));
  const subscribers = cell("num subscribers", "");
  const order = board.order === "asc" ? "Lowest" : "Highest";
  const season = board.reset_schedule === "never" ? `season ${board.season}` : `season ${board.season}, resets ${board.reset_schedule}`;
  const rules = cell("rules", `${order} score wins · ${RULES[board.operator]} · ${board.score_format} · ${season}`);
  const actions = cell("actions", "");
  actions.append(button("Manage", "button small secondary manage", () => openManager(row, board)));
  actions.append(" ");
  actions.append(button("Edit", "button small secondary", () => openEditor(row, board)));
  actions.append(" ");
  actions.append(button("Delete", "button small danger", () => remove(board)));
  row.append(head, players, subscribers, rules, actions);
  return row;
}

function cell(className, text) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  return td;
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

async function refreshBoards() {
  const { boards } = await authed("GET", "/api/boards");
  tableBody.replaceChildren(...boards.map(boardRow));
  document.getElementById("admin-no-boards").hidden = boards.length > 0;
}

/** The board fields of a form as the API wants them; empty bounds mean "no bound". */
function boardFields(form) {
  const fields = {
    title: form.elements.title.value.trim(),
    score_format: form.elements.score_format.value,
    reset_schedule: form.elements.reset_schedule.value,
    player_submissions: form.elements.player_submissions.checked,
  };
  for (const name of ["min_score", "max_score"]) {
    const text = form.elements[name].value.trim();
    fields[name] = text === "" ? null : Number(text);
    if (text !== "" && !Number.isSafeInteger(fields[name])) {
      throw new Error(`${name.replace("_", " ")} must be a whole number, got "${text}"`);
    }
  }
  return fields;
}

async function remove(board) {
  if (!confirm(`Delete the board "${board.title}" and all its scores? This cannot be undone.`)) return;
  boardsError.textContent = "";
  try {
    await authed("DELETE", `/api/boards/${encodeURIComponent(board.id)}`);
    await refreshBoards();
  } catch (error) {
    boardsError.textContent = error.message;
  }
}

/** The row under a board's row that holds a panel; a second click on its button closes it. */
function panelRow(row, className) {
  const open = row.nextElementSibling;
  if (open && open.classList.contains("panel-row")) {
    open.remove();
    if (open.classList.contains(className)) return null;
  }
  const panel = document.createElement("tr");
  panel.className = `panel-row ${className}`;
  const td = document.createElement("td");
  td.colSpan = 5;
  panel.append(td);
  row.after(panel);
  return td;
}

const boardPath = (board) => `/api/boards/${encodeURIComponent(board.id)}`;

function exportLinks(container, board, season) {
  const query = season === undefined ? "" : `&season=${season}`;
  for (const fmt of ["csv", "json"]) {
    const link = document.createElement("a");
    link.href = `/admin/export/${encodeURIComponent(board.id)}?format=${fmt}${query}`;
    link.textContent = fmt.toUpperCase();
    link.setAttribute("download", "");
    const label = season === undefined ? "current season" : `season ${season}`;
    link.setAttribute("aria-label", `Export ${board.title}, ${label}, as ${fmt.toUpperCase()}`);
    container.append(link, " ");
  }
}

async function fillManager(panel, board) {
  const [fresh, seasons, top] = await Promise.all([
    authed("GET", boardPath(board)),
    authed("GET", `${boardPath(board)}/seasons`),
    authed("GET", `${boardPath(board)}/leaderboard?limit=${TOP_PLAYERS_SHOWN}`),
  ]);
  const current = panel.querySelector(".export-links.current");
  current.replaceChildren(`Season ${fresh.season} (now): `);
  exportLinks(current, board, undefined);
  const list = panel.querySelector(".seasons");
  list.replaceChildren(
    ...seasons.seasons
      .slice()
      .reverse()
      .map((s) => {
        const item = document.createElement("li");
        const link = seasonLink(board.id, s.season);
        item.append(link, ` (${s.players} players): `);
        exportLinks(item, board, s.season);
        return item;
      }),
  );
  const players = panel.querySelector(".player-list");
  players.replaceChildren(
    ...top.entries.map((e) => {
      const item = document.createElement("li");
      const who = document.createElement("span");
      who.textContent = `#${e.rank} ${e.name} (${e.user_id}) · ${formatScore(e.score, board.score_format)}`;
      const remove = button("Remove…", "button small danger", () => removePlayer(panel, board, e.user_id));
      remove.setAttribute("aria-label", `Remove ${e.name}'s entry`);
      item.append(who, remove);
      return item;
    }),
  );
  panel.querySelector(".none").hidden = top.entries.length > 0;
}

async function removePlayer(panel, board, userId) {
  if (!confirm(`Remove ${userId}'s entry from "${board.title}"? Their score is deleted; everyone sees the new standings.`)) return;
  const errorLine = panel.querySelector(".field-error");
  errorLine.textContent = "";
  try {
    await authed("DELETE", `${boardPath(board)}/players/${encodeURIComponent(userId)}`);
    await fillManager(panel, board);
    await refreshCounts();
  } catch (error) {
    errorLine.textContent = error.message;
  }
}

function openManager(row, board) {
  const td = panelRow(row, "manage-row");
  if (!td) return;
  const panel = document.getElementById("manage-template").content.firstElementChild.cloneNode(true);
  panel.setAttribute("aria-label", `Manage ${board.title}`);
  td.append(panel);
  const errorLine = panel.querySelector(".field-error");
  panel.querySelector(".reset").addEventListener("click", async () => {
    if (!confirm(`Reset "${board.title}"? The standings are archived as a season and the board starts empty.`)) return;
    errorLine.textContent = "";
    try {
      const done = await authed("POST", `${boardPath(board)}/reset`, {});
      errorLine.textContent = "";
      panel.querySelector(".reset").textContent = `Reset again… (season ${done.current} now)`;
      await fillManager(panel, board);
      await refreshCounts();
    } catch (error) {
      errorLine.textContent = error.message;
    }
  });
  const form = panel.querySelector(".remove-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = form.elements.user_id.value.trim();
    if (userId) removePlayer(panel, board, userId).then(() => form.reset());
  });
  fillManager(panel, board).catch((error) => {
    errorLine.textContent = error.message;
  });
}

async function refreshCounts() {
  try {
    drawStats(await authed("GET", "/api/admin/stats"));
  } catch {
    // The next poll catches up.
  }
}

function openEditor(row, board) {
  const td = panelRow(row, "edit-row");
  if (!td) return;
  const form = document.getElementById("edit-template").content.firstElementChild.cloneNode(true);
  form.elements.title.value = board.title;
  form.elements.score_format.value = board.score_format;
  form.elements.reset_schedule.value = board.reset_schedule;
  form.elements.min_score.value = board.min_score ?? "";
  form.elements.max_score.value = board.max_score ?? "";
  form.elements.player_submissions.checked = board.player_submissions;
  form.setAttribute("aria-label", `Edit ${board.title}`);
  td.append(form);
  const editRow = td.parentElement;
  form.elements.title.focus();
  form.querySelector(".cancel").addEventListener("click", () => editRow.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorLine = form.querySelector(".field-error");
    errorLine.textContent = "";
    try {
      await authed("PATCH", `/api/boards/${encodeURIComponent(board.id)}`, boardFields(form));
      await refreshBoards();
    } catch (error) {
      errorLine.textContent = error.message;
    }
  });
}

const createForm = document.getElementById("create-board");
createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const errorLine = document.getElementById("create-error");
  errorLine.textContent = "";
  try {
    const body = {
      id: createForm.elements.id.value.trim(),
      order: createForm.elements.order.value,
      operator: createForm.elements.operator.value,
      ...boardFields(createForm),
    };
    await authed("POST", "/api/boards", body);
    createForm.reset();
    await refreshBoards();
  } catch (error) {
    errorLine.textContent = error.message;
  }
});

sessionToken().then(async (t) => {
  token = t;
  if (!token) {
    goToLogin({ expired: true });
    return;
  }
  await refreshBoards();
  pollStats();
});
