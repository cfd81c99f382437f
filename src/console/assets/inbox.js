// The inbox page: handed-off conversations, live. It uses app.js's
// helpers (api, scoped, el, when, setStatus, busy, json). The server's
// event stream says when the list changed; the page then fetches it.
// Everything shown is set as text, never as markup.
"use strict";

// Where the business's routes are: the business chosen in the header, else
// the caller's one business (an agent of one business among several
// served has no switcher), else the unprefixed routes (one business served).
let base = "/admin";

async function findBase() {
  base = await businessBase();
}

// What the agent is typing, by conversation and field: kept across redraws.
const drafts = new Map();
let loading = null;
let again = false;

function draftOf(key) {
  if (!drafts.has(key)) drafts.set(key, {});
  return drafts.get(key);
}

// An input that keeps its draft (and its focus) across redraws.
function field(key, name, tag, label) {
  const id = "f-" + key + "-" + name;
  const wrap = el("label", label);
  const input = el(tag);
  input.id = id;
  input.name = name;
  input.value = draftOf(key)[name] || "";
  input.addEventListener("input", () => { draftOf(key)[name] = input.value; });
  wrap.htmlFor = id;
  wrap.append(input);
  return wrap;
}

function who(c) {
  return c.wa_id ? "+" + c.wa_id : (c.user_id || c.contact);
}

// The id the contact routes take: the wa_id, else the business-scoped id.
function idOf(c) {
  return c.wa_id || c.user_id;
}

async function act(button, label, path, body) {
  return busy(button, label, async () => {
    const options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) };
    const r = await api(path, options);
    const d = await json(r);
    if (!r.ok) { setStatus(d.error || "That did not work (" + r.status + ").", true); return false; }
    return true;
  });
}

function card(c, me) {
  const li = el("li");
  li.dataset.contact = c.contact;
  const mine = !!(c.taken_by && me && c.taken_by.email === me);
  if (mine) li.className = "mine";
  li.append(el("h2", (c.name ? c.name + " · " : "") + who(c)));
  const w = c.window || {};
  li.append(el("p", "Waiting since " + when(c.waiting_since) + ". " +
    (w.open ? "Free replies until " + when(w.until) + "." : "The 24-hour window is closed: send a template.")));
  const taken = el("p", c.taken_by ? "Taken by " + (c.taken_by.email || c.taken_by.id) + (mine ? " (you)" : "") : "Not taken yet");
  taken.className = "taken-by";
  li.append(taken);
  const ol = el("ol");
  ol.className = "chat";
  for (const m of c.recent || []) {
    const item = el("li", m.text || "[" + m.kind + "]");
    if (m.direction === "in") item.className = "customer";
    item.append(el("span", when(m.at)));
    item.lastChild.className = "meta";
    ol.append(item);
  }
  li.append(ol);
  const actions = el("div");
  actions.className = "actions";
  const take = el("button", mine ? "Taken" : "Take");
  take.type = "button";
  take.className = "take";
  take.disabled = mine;
  take.addEventListener("click", async () => {
    if (await act(take, "Taking…", base + "/inbox/" + encodeURIComponent(c.contact) + "/take")) {
      setStatus("You have this conversation.");
      load();
    }
  });
  const close = el("button", "Close");
  close.type = "button";
  close.className = "close";
  close.addEventListener("click", async () => {
    if (await act(close, "Closing…", base + "/contacts/" + encodeURIComponent(idOf(c)) + "/handoff/close")) {
      drafts.delete(c.contact);
      setStatus("Closed: the flows answer this customer again.");
    }
  });
  actions.append(take, close);
  li.append(actions);
  li.append(replyForm(c, w.open));
  return li;
}

function replyForm(c, open) {
  const form = el("form");
  form.className = "reply";
  const key = c.contact;
  if (open) {
    form.append(field(key, "text", "textarea", "Reply"));
  } else {
    form.append(field(key, "template", "input", "Template name"),
      field(key, "language", "input", "Language (e.g. en_US)"),
      field(key, "params", "input", "Body parameters, separated by |"));
  }
  const send = el("button", "Send");
  send.type = "submit";
  form.append(send);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = draftOf(key);
    let body;
    if (open) {
      if (!(d.text || "").trim()) { setStatus("Write a reply first.", true); return; }
      body = { text: d.text };
    } else {
      const params = (d.params || "").split("|").map((p) => p.trim()).filter((p) => p);
      body = { template: { name: (d.template || "").trim(), language: { code: (d.language || "").trim() }, body_parameters: params } };
    }
    if (await act(send, "Sending…", base + "/contacts/" + encodeURIComponent(idOf(c)) + "/messages", body)) {
      drafts.delete(key);
      setStatus("Sent: it goes out in order with the conversation.");
      load();
    }
  });
  return form;
}

// The list last drawn: an unchanged list is not drawn again (a button
// being clicked stays where it is).
let drawn = "";

function render(d) {
  const shown = JSON.stringify(d.conversations || []) + "|" + me();
  if (shown === drawn) return;
  drawn = shown;
  const list = document.getElementById("inbox");
  const focused = document.activeElement && document.activeElement.id;
  const items = d.conversations || [];
  list.replaceChildren(...items.map((c) => card(c, me())));
  document.getElementById("empty").hidden = items.length > 0;
  if (focused && focused.startsWith("f-")) {
    const back = document.getElementById(focused);
    if (back) back.focus();
  }
}

// Who this session is (the header shows "email · role"), to tell "you" apart.
function me() {
  const w = document.getElementById("who");
  return w ? w.textContent.split(" · ")[0].trim() : "";
}

async function load() {
  if (loading) { again = true; return loading; }
  loading = (async () => {
    try {
      const r = await api(base + "/inbox");
      const d = await json(r);
      if (!r.ok) { setStatus(d.error || "Could not load the inbox (" + r.status + ").", true); return; }
      render(d);
    } catch (e) {
      if (e.message !== "signed out") setStatus("Could not reach the server.", true);
    }
  })();
  await loading;
  loading = null;
  if (again) { again = false; load(); }
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource(scoped(base + "/inbox/events"));
  source.addEventListener("inbox", () => {
    live.textContent = "Live: updated " + new Date().toLocaleTimeString();
    load();
  });
  source.addEventListener("error", () => {
    live.textContent = "Reconnecting…";
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  if (!document.getElementById("inbox")) return;
  await findBase();
  listen();
});
