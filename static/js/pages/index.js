// The board list: player counts kept fresh and boards an organiser adds or deletes appear and
// disappear without a reload. A light poll of GET /api/boards (one small request every few
// seconds, paused while the tab is hidden) rather than a WebSocket subscription to every board.

import { api, count, pageData, sessionToken } from "./common.js";

const POLL_MS = 3_000;
const list = document.getElementById("board-list");
const none = document.getElementById("no-boards");
let token = null;

function describeRules(board) {
  const order = board.order === "asc" ? "Lowest" : "Highest";
  const how = { best: "each player's best counts", set: "the latest score counts", incr: "scores add up" };
  return `${order} score wins · ${how[board.operator]}`;
}

function buildCard(board) {
  const card = document.createElement("li");
  card.className = "board-card";
  card.dataset.board = board.id;
  const href = `/boards/${encodeURIComponent(board.id)}`;
  const title = document.createElement("h2");
  const link = document.createElement("a");
  link.href = href;
  title.append(link);
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.innerHTML = '<span class="players num"></span> <span class="players-word"></span>';
  const rules = document.createElement("p");
  rules.className = "rules";
  const reset = document.createElement("p");
  reset.className = "reset";
  const links = document.createElement("p");
  links.className = "card-links";
  const kiosk = document.createElement("a");
  kiosk.href = `${href}?kiosk=1`;
  kiosk.textContent = "Big screen view";
  links.append(kiosk);
  card.append(title, meta, rules, reset, links);
  return card;
}

function fillCard(card, board) {
  card.querySelector("h2 a").textContent = board.title;
  card.querySelector(".players").textContent = count(board.players);
  card.querySelector(".players-word").textContent = board.players === 1 ? "player" : "players";
  card.querySelector(".rules").textContent = describeRules(board);
  card.querySelector(".reset").textContent = board.next_reset_at
    ? `Next reset ${board.next_reset_at.slice(0, 10)} ${board.next_reset_at.slice(11, 16)} UTC`
    : "Never resets";
}

function draw(boards) {
  const cards = new Map([...list.children].map((card) => [card.dataset.board, card]));
  const ordered = boards.map((board) => {
    const card = cards.get(board.id) || buildCard(board);
    cards.delete(board.id);
    fillCard(card, board);
    return card;
  });
  list.replaceChildren(...ordered);
  none.hidden = boards.length > 0;
}

async function poll() {
  if (!document.hidden) {
    try {
      const answer = await api("GET", "/api/boards", { token });
      draw(answer.boards);
    } catch (error) {
      if (error.status === 401) token = await sessionToken().catch(() => null);
    }
  }
  setTimeout(poll, POLL_MS);
}

if (list) {
  const data = pageData();
  if (data.may_read) {
    sessionToken()
      .catch(() => null)
      .then((t) => {
        token = t;
        setTimeout(poll, POLL_MS);
      });
  }
}
