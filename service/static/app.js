// r2ec-serve demo page: build a history, stream the reasoning, show the ranking. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { history: [], info: null };

const FRIENDLY = {
  validation_error: "The request was not accepted",
  unauthorized: "The API key is missing or wrong",
  not_found: "Not found",
  overloaded: "The server is busy; try again in a moment",
  not_ready: "The model is still loading; try again shortly",
  draining: "The server is restarting; try again shortly",
  dependency_unavailable: "A service the recommender needs is unavailable",
  timeout: "The request took too long",
  payload_too_large: "The history is too large",
  internal_error: "Something went wrong on the server",
};

function headers(json = false) {
  const h = {};
  if (json) h["content-type"] = "application/json";
  const key = sessionStorage.getItem("r2ec-key");
  if (key) h["authorization"] = "Bearer " + key;
  return h;
}

function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  const e = err.error || err;
  const where = e.field ? ` (field: ${e.field})` : "";
  box.textContent = `${FRIENDLY[e.type] || "Error"}: ${e.message || String(err)}${where}.`;
  box.hidden = false;
}

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...headers(!!options.body), ...(options.headers || {}) } });
  const body = await r.json().catch(() => ({ error: { type: "internal_error", message: `HTTP ${r.status}` } }));
  if (!r.ok) throw body;
  return body;
}

function li(text, buttonLabel, onClick, extra) {
  const item = document.createElement("li");
  item.append(document.createTextNode(text));
  if (extra) item.append(extra);
  if (buttonLabel) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = buttonLabel;
    b.setAttribute("aria-label", `${buttonLabel}: ${text}`);
    b.addEventListener("click", onClick);
    item.append(b);
  }
  return item;
}

function renderHistory() {
  const ol = $("history");
  ol.replaceChildren(...state.history.map((e, i) =>
    li(`${e.title || "item " + e.item_id}${e.rating ? " — " + e.rating + "/5" : ""}`, "Remove", () => {
      state.history.splice(i, 1);
      renderHistory();
    })));
  $("history-count").textContent = state.history.length ? `(${state.history.length})` : "(empty)";
}

function addItem(item) {
  const rating = $("rating").value;
  state.history.push({ item_id: item.item_id, title: item.title, rating: rating ? Number(rating) : null });
  renderHistory();
}

let searchTimer = null;
async function search() {
  const q = $("search").value.trim();
  const ul = $("search-results");
  if (!q) { ul.replaceChildren(); return; }
  try {
    const page = await api(`/v1/items?q=${encodeURIComponent(q)}&limit=8`);
    ul.replaceChildren(...page.items.map((it) => li(`${it.title}${it.genres.length ? " · " + it.genres.join(", ") : ""}`, "Add", () => addItem(it))));
    if (page.total > page.items.length) ul.append(li(`… ${page.total - page.items.length} more: refine the search`));
    showError(null);
  } catch (err) { showError(err); }
}

function parseSSE(buffer, onEvent) {
  let cut;
  while ((cut = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, cut);
    buffer = buffer.slice(cut + 2);
    let event = "message", data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
    }
    onEvent(event, data.join("\n"));
  }
  return buffer;
}

function stripYear(title) { return title.replace(/\s*\(\d{4}\)\s*$/, "").trim(); }

function renderResult(res) {
  const reasoning = $("reasoning").textContent.toLowerCase();
  $("results").replaceChildren(...res.items.map((it) => {
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${it.year ? it.year + " · " : ""}${it.genres.join(", ")} · score ${it.score.toFixed(4)} · probability ${(it.probability * 100).toFixed(2)}%`;
    const item = li(it.title, null, null, meta);
    if (reasoning && reasoning.includes(stripYear(it.title).toLowerCase())) {
      item.classList.add("mentioned");
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "in the reasoning";
      item.insertBefore(badge, meta);
    }
    return item;
  }));
  const t = res.timings;
  $("timings").textContent = `${res.cached ? "From the cache. " : ""}Total ${t.total_ms.toFixed(0)} ms — queue ${t.queue_ms.toFixed(0)}, generation ${t.generation_ms.toFixed(0)}, capture ${t.capture_ms.toFixed(0)}, search ${t.search_ms.toFixed(1)} ms · ${res.reasoning_tokens} reasoning tokens (${res.finish_reason || "no reasoning"}) · model ${res.model}, bundle ${res.bundle_version}`;
}

async function recommend() {
  showError(null);
  if (!state.history.length) { showError({ type: "validation_error", message: "add at least one item to the history" }); return; }
  const body = {
    history: state.history.map((e) => (e.rating ? { item_id: e.item_id, rating: e.rating } : { item_id: e.item_id })),
    k: Number($("k").value) || 10,
    reasoning: $("reasoning-on").checked,
  };
  const tokens = $("tokens").value;
  if (tokens) body.max_reasoning_tokens = Number(tokens);
  $("reasoning").textContent = "";
  $("results").replaceChildren();
  $("timings").textContent = "";
  const button = $("recommend");
  button.disabled = true;
  button.textContent = "Recommending…";
  try {
    const r = await fetch("/v1/recommend/stream", { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    if (!r.ok) { showError(await r.json().catch(() => ({ type: "internal_error", message: `HTTP ${r.status}` }))); return; }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseSSE(buffer + decoder.decode(value, { stream: true }), (event, data) => {
        if (event === "reasoning") $("reasoning").textContent += JSON.parse(data).delta;
        else if (event === "result") renderResult(JSON.parse(data));
        else if (event === "error") showError(JSON.parse(data));
      });
    }
  } catch (err) {
    showError({ type: "internal_error", message: String(err) });
  } finally {
    button.disabled = false;
    button.textContent = "Recommend";
  }
}

async function init() {
  try {
    const info = await api("/info");
    state.info = info;
    const b = info.bundle;
    $("model").textContent = b ? `Model ${b.name} · bundle ${b.version} · ${b.items} items · backend ${info.backend}` : "The model is still loading.";
    if (info.auth) {
      $("auth").hidden = false;
      $("api-key").value = sessionStorage.getItem("r2ec-key") || "";
    }
    const ex = await api("/v1/examples").catch(() => ({ examples: [] }));
    state.examples = ex.examples;
    for (const [i, e] of ex.examples.entries()) {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = e.name;
      $("example").append(o);
    }
  } catch (err) { showError(err); }
}

$("api-key").addEventListener("change", (e) => sessionStorage.setItem("r2ec-key", e.target.value.trim()));
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 200); });
$("add-id").addEventListener("click", () => {
  const id = $("by-id").value.trim();
  if (id) { addItem({ item_id: id, title: "" }); $("by-id").value = ""; }
});
$("by-id").addEventListener("keydown", (e) => { if (e.key === "Enter") $("add-id").click(); });
$("clear").addEventListener("click", () => { state.history = []; renderHistory(); });
$("recommend").addEventListener("click", recommend);
$("example").addEventListener("change", async (e) => {
  const ex = state.examples && state.examples[Number(e.target.value)];
  if (!ex || e.target.value === "") return;
  state.history = [];
  for (const ev of ex.history) {
    const item = await api(`/v1/items/${encodeURIComponent(ev.item_id)}`).catch(() => ({ item_id: ev.item_id, title: "" }));
    state.history.push({ item_id: ev.item_id, title: item.title, rating: ev.rating });
  }
  renderHistory();
});
init();
