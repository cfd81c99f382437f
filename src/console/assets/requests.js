// The privacy requests page: the chat's requests and the privacy desk's in
// one list, refreshed every 10 seconds. An admin (or the owner) logs desk
// requests and carries them out through the admin API; an auditor sees the
// list only. It uses app.js's helpers (api, business, el, when, span,
// setStatus, busy, json, role). Everything shown is set as text.
"use strict";

const mayAct = () => role() === "admin" || role() === "owner";

// Where new requests are logged: the business chosen in the header, else
// the caller's one business, else the unprefixed route (one served).
let deskBase = "/admin";

async function findDeskBase() {
  deskBase = await businessBase();
}

// What the admin is typing into a request's fields: kept across redraws.
const deskDrafts = new Map();

function deskField(id, name, label) {
  const key = id + ":" + name;
  const wrap = el("label", label + " ");
  const input = el("input");
  input.id = "desk-" + name + "-" + id;
  input.name = name;
  input.value = deskDrafts.get(key) || "";
  input.addEventListener("input", () => deskDrafts.set(key, input.value));
  wrap.htmlFor = input.id;
  wrap.append(input);
  return [wrap, input];
}

function deskPath(q, act) {
  return "/admin/businesses/" + encodeURIComponent(q.business) + "/desk/" + encodeURIComponent(q.id) + "/" + act;
}

// Posts an act; answers the response (or null, with the error shown).
async function deskAct(button, label, q, act, body) {
  return busy(button, label, async () => {
    const options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) };
    const r = await api(deskPath(q, act), options);
    if (!r.ok) {
      const d = await json(r);
      setStatus(d.error || "That did not work (" + r.status + ").", true);
      return null;
    }
    return r;
  });
}

function deskButton(text, work) {
  const b = el("button", text);
  b.type = "button";
  b.addEventListener("click", () => work(b).catch(() => setStatus("Could not reach the server.", true)));
  return b;
}

// The buttons that carry out an open desk request of its kind.
function deskActions(q) {
  const cell = el("td");
  if (!mayAct() || q.source !== "desk" || !q.open) return cell;
  const done = async (r, news) => {
    if (!r) return;
    setStatus(news);
    await loadAllRequests(true);
  };
  if (q.kind === "access") {
    cell.append(deskButton("Download export", async (b) => {
      const r = await deskAct(b, "Exporting…", q, "export", { deliver: "download" });
      if (!r) return;
      const blob = new Blob([JSON.stringify(await r.json(), null, 2)], { type: "application/json" });
      const a = el("a");
      a.href = URL.createObjectURL(blob);
      a.download = "export-" + q.reference + ".json";
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      await done(r, "Export downloaded; send it to the customer, then close the request.");
    }), deskButton("Send on WhatsApp", async (b) => {
      await done(await deskAct(b, "Sending…", q, "export", { deliver: "whatsapp" }), "The export is on its way to the customer.");
    }));
  } else if (q.kind === "rectification") {
    const [nameLabel, name] = deskField(q.id, "name", "Name");
    const [tagsLabel, tags] = deskField(q.id, "tags", "Tags (comma-separated)");
    cell.append(nameLabel, tagsLabel, deskButton("Rectify", async (b) => {
      const body = {};
      if (name.value.trim()) body.name = name.value.trim();
      if (tags.value.trim()) body.tags = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      await done(await deskAct(b, "Rectifying…", q, "rectify", body), "Rectified; the profile shows it in a moment.");
    }));
  } else if (q.kind === "erasure") {
    cell.append(deskButton("Erase", async (b) => {
      if (!window.confirm("Erase everything kept about this customer? This cannot be undone.")) return;
      await done(await deskAct(b, "Erasing…", q, "erase"), "Erased (unless a legal hold keeps the data).");
    }));
  } else if (q.kind === "objection" || q.kind === "restriction") {
    const act = q.kind === "objection" ? "object" : "restrict";
    cell.append(deskButton(q.kind === "objection" ? "Record objection" : "Restrict", async (b) => {
      await done(await deskAct(b, "Recording…", q, act), "Recorded: no campaign reaches this customer.");
    }));
  }
  const [outcomeLabel, outcome] = deskField(q.id, "outcome", "Outcome");
  outcome.placeholder = "done, or refused: the reason";
  cell.append(outcomeLabel, deskButton("Close", async (b) => {
    const text = outcome.value.trim() || "done";
    await done(await deskAct(b, "Closing…", q, "close", { outcome: text }), "Closed.");
  }));
  return cell;
}

function stateCell(q) {
  const state = el("td", q.state);
  if (q.urgency === "due" || q.urgency === "overdue") {
    const flag = el("span", q.urgency);
    flag.className = "flag " + q.urgency;
    state.append(" ", flag);
  }
  if (q.outcome) state.append(" (" + q.outcome + ")");
  return state;
}

function deadlineCell(q) {
  if (q.source === "desk") return el("td", q.deadline);
  if (q.closed_at) return el("td", (q.state === "lapsed" ? "lapsed " : "answered ") + when(q.closed_at));
  return el("td", when(q.due_at));
}

function requestRow(q) {
  const tr = el("tr");
  tr.className = q.urgency;
  tr.dataset.source = q.source;
  if (q.reference) tr.dataset.reference = q.reference;
  const contact = el("td");
  if (q.contact) {
    const a = el("a", q.contact);
    a.href = "/console/audit?contact=" + encodeURIComponent(q.contact);
    a.title = "This contact's audit entries";
    contact.append(a);
  }
  const made = q.source === "desk" ? q.received : when(q.at) + " (" + span(q.age_seconds) + ")";
  tr.append(el("td", q.what), contact, el("td", q.channel), el("td", q.reference || ""), el("td", made),
    stateCell(q), deadlineCell(q), deskActions(q));
  return tr;
}

async function loadAllRequests(force) {
  const r = await api("/console/api/requests");
  const d = await json(r);
  if (!r.ok) { setStatus(d.error || "Could not load the requests (" + r.status + ").", true); return; }
  for (const k of ["open", "due", "overdue"]) document.getElementById(k).textContent = String(d[k]);
  const tbody = document.getElementById("requests");
  // Someone typing or on a button keeps their place: redraw later.
  if (!force && tbody.contains(document.activeElement)) return;
  tbody.replaceChildren();
  for (const q of d.requests) tbody.append(requestRow(q));
  if (!d.requests.length) {
    const tr = el("tr");
    const td = el("td", "No requests yet.");
    td.colSpan = 8;
    tr.append(td);
    tbody.append(tr);
  }
  document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
}

async function logRequest(event) {
  event.preventDefault();
  const form = document.getElementById("desk-log");
  const value = (id) => document.getElementById(id).value.trim();
  const body = {
    kind: value("desk-kind"), contact: value("desk-contact").replace(/^\+/, "").replace(/[\s-]/g, ""),
    channel: value("desk-channel"), reference: value("desk-reference"), received: value("desk-received"),
  };
  await busy(document.getElementById("desk-submit"), "Logging…", async () => {
    const options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await api(deskBase + "/desk", options);
    const d = await json(r);
    if (!r.ok) { setStatus(d.error || "Could not log the request (" + r.status + ").", true); return; }
    form.reset();
    document.getElementById("desk-received").value = new Date().toISOString().slice(0, 10);
    setStatus("Logged request " + d.reference + ", due " + d.deadline + ".");
    await loadAllRequests(true);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (!document.getElementById("requests")) return;
  if (mayAct()) {
    const form = document.getElementById("desk-log");
    form.hidden = false;
    document.getElementById("desk-received").value = new Date().toISOString().slice(0, 10);
    form.addEventListener("submit", (e) => logRequest(e).catch(() => setStatus("Could not reach the server.", true)));
    findDeskBase().catch(() => {});
  }
  const tick = () => loadAllRequests(false).catch(() => setStatus("Could not reach the server; retrying.", true));
  tick();
  setInterval(tick, 10000);
});
