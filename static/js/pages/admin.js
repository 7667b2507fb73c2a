// The organiser's page: create, edit and delete boards through the JSON API, and watch the
// server's live figures (GET /api/admin/stats every 2 s) as numbers and five-minute sparklines.

import { drawSparkline } from "../chart.js";
import { api, goToLogin, sessionToken } from "./common.js";

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

async function pollStats() {
  if (!document.hidden) {
    try {
      drawStats(await authed("GET", "/api/admin/stats"));
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
  const rules = cell("rules", `${order} score wins · ${RULES[board.operator]} · ${board.score_format}`);
  const actions = cell("actions", "");
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

function openEditor(row, board) {
  const open = row.nextElementSibling;
  if (open && open.classList.contains("edit-row")) {
    open.remove();
    return;
  }
  const form = document.getElementById("edit-template").content.firstElementChild.cloneNode(true);
  form.elements.title.value = board.title;
  form.elements.score_format.value = board.score_format;
  form.elements.min_score.value = board.min_score ?? "";
  form.elements.max_score.value = board.max_score ?? "";
  form.elements.player_submissions.checked = board.player_submissions;
  form.setAttribute("aria-label", `Edit ${board.title}`);
  const editRow = document.createElement("tr");
  editRow.className = "edit-row";
  const td = document.createElement("td");
  td.colSpan = 5;
  td.append(form);
  editRow.append(td);
  row.after(editRow);
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
