// The console's script: no framework, no third-party code. It reads the
// CSRF token from the page and sends it with every request that changes
// something; the session cookie travels by itself (same origin).
"use strict";

const csrf = () => {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
};

// The business every page shows, when several are served: chosen in the
// header's switcher, kept in this browser. The admin API is then called
// under /admin/businesses/{id}/…, and the console's own API with
// ?business={id}.
const BUSINESS_KEY = "whatsify.business";
const business = () => window.localStorage.getItem(BUSINESS_KEY) || "";

// Where one business's admin routes are: "/admin" when a business is
// chosen in the header (the page script adds it), else the caller's one
// business, else the unprefixed routes (one business served). For the
// inbox and requests pages.
async function businessBase() {
  if (business()) return "/admin";
  const r = await api("/admin/businesses").catch(() => null);
  if (!r || !r.ok) return "/admin";
  const list = (await json(r)).businesses || [];
  return list.length === 1 ? "/admin/businesses/" + encodeURIComponent(list[0].id) : "/admin";
}
let ready = null;

function scoped(path) {
  const b = business();
  if (!b) return path;
  // Operators and tokens are the whole service's, not a business's.
  const global = /^\/admin\/(businesses|tokens|operators)(\/|$)/.test(path);
  if (path.startsWith("/admin/") && !global) {
    return "/admin/businesses/" + encodeURIComponent(b) + path.slice("/admin".length);
  }
  if (path.startsWith("/console/api/")) {
    return path + (path.includes("?") ? "&" : "?") + "business=" + encodeURIComponent(b);
  }
  return path;
}

// The signed-in operator's role.
function role() {
  const who = document.getElementById("who");
  return who ? who.dataset.role : "";
}

async function api(path, options = {}) {
  if (ready && path !== "/admin/businesses") await ready;
  const headers = Object.assign({ "X-CSRF-Token": csrf() }, options.headers || {});
  const r = await fetch(scoped(path), Object.assign({ credentials: "same-origin" }, options, { headers }));
  if (r.status === 401) {
    window.location.assign("/console");
    throw new Error("signed out");
  }
  return r;
}

// Fills the switcher; with one business served it stays hidden and the
// unprefixed routes are used.
async function switcher() {
  const select = document.getElementById("business");
  if (!select) return;
  const r = await api("/admin/businesses");
  if (!r.ok) return;
  const list = (await r.json()).businesses || [];
  if (list.length < 2) {
    window.localStorage.removeItem(BUSINESS_KEY);
    return;
  }
  if (!list.some((b) => b.id === business())) window.localStorage.setItem(BUSINESS_KEY, list[0].id);
  for (const b of list) {
    const o = document.createElement("option");
    o.value = b.id;
    o.textContent = b.name + " (" + b.id + ")";
    o.selected = b.id === business();
    select.append(o);
  }
  document.getElementById("business-pick").hidden = false;
  select.addEventListener("change", () => {
    window.localStorage.setItem(BUSINESS_KEY, select.value);
    window.location.reload();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  ready = switcher().catch(() => {});
});

function ago(unix) {
  if (!unix) return "none yet";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const r = await api("/console/api/overview");
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      status.textContent = body.error || "Could not load the figures (" + r.status + ").";
      status.className = "error";
      return;
    }
    const d = await r.json();
    for (const k of ["messages_in", "messages_out", "opt_outs", "opt_ins", "exports", "erasures", "outbox_depth", "dead_letters"]) {
      document.getElementById(k).textContent = String(d[k]);
    }
    document.getElementById("day").textContent = d.day;
    document.getElementById("outbox_oldest").textContent =
      d.outbox_oldest_seconds == null ? "nothing waiting" : d.outbox_oldest_seconds + " s";
    document.getElementById("sending").textContent =
      d.paused_numbers.length ? "paused (" + d.paused_numbers.map(p => p.phone_number_id + ": " + p.code).join(", ") + ")" : "running";
    document.getElementById("last_webhook").textContent = ago(d.last_webhook_at);
    // Routine refreshes are not announced; only problems are.
    document.getElementById("updated").textContent = "Updated " + new Date().toLocaleTimeString();
    status.textContent = "";
    status.className = "";
  } catch (e) {
    if (e.message !== "signed out") {
      status.textContent = "Could not reach the server; retrying.";
      status.className = "error";
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const out = document.getElementById("sign-out");
  if (out) {
    out.addEventListener("click", async () => {
      out.disabled = true;
      out.textContent = "Signing out…";
      await api("/console/sign-out", { method: "POST" }).catch(() => {});
      window.location.assign("/console");
    });
  }
  if (document.getElementById("messages_in")) {
    refresh();
    setInterval(refresh, 5000);
  }
});

// Contacts page. Everything shown is set as text, never as markup.
function el(tag, text) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function when(unix) {
  return unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "";
}

// Errors interrupt (role=alert); other news waits its turn (role=status).
function setStatus(text, error) {
  const s = document.getElementById("status");
  s.setAttribute("role", error ? "alert" : "status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

async function busy(button, label, work) {
  const old = button.textContent;
  button.disabled = true;
  button.textContent = label;
  button.setAttribute("aria-busy", "true");
  try { return await work(); } finally {
    button.disabled = false;
    button.textContent = old;
    button.removeAttribute("aria-busy");
  }
}

let current = null;

async function find(id) {
  const r = await api("/admin/contacts/" + encodeURIComponent(id));
  const section = document.getElementById("contact");
  if (r.status === 404) { section.hidden = true; setStatus("Nothing is kept about " + id + "."); return; }
  if (!r.ok) { section.hidden = true; setStatus("Could not look it up (" + r.status + ").", true); return; }
  const d = await r.json();
  current = id;
  const p = d.profile || {};
  const dl = document.getElementById("profile");
  dl.replaceChildren();
  for (const [k, v] of [["Name", p.name], ["Chosen by the customer", p.name_chosen_by_customer ? "yes" : "no"], ["WhatsApp name", p.whatsapp_name], ["Tags", (p.tags || []).join(", ") || "none"], ["First message", when(p.first_seen)], ["Last message", when(p.last_seen)], ["Handed off since", when(p.handed_off_since) || "no"]]) {
    dl.append(el("dt", k), el("dd", v || ""));
  }
  const tbody = document.getElementById("ledger");
  tbody.replaceChildren();
  for (const c of d.ledger || []) {
    const tr = el("tr");
    tr.append(el("td", when(c.at)), el("td", c.purpose), el("td", c.granted ? "yes" : "no"), el("td", c.source), el("td", c.evidence || ""));
    tbody.append(tr);
  }
  document.getElementById("conversation").replaceChildren();
  document.getElementById("download").hidden = true;
  // An agent sees the profile and the conversation, not the export or
  // the erasure (the server refuses them too).
  document.getElementById("their-data").hidden = role() === "agent";
  section.hidden = false;
  setStatus("Found. This view is recorded in the audit log.");
}

async function exportData() {
  const r = await api("/admin/contacts/" + encodeURIComponent(current) + "/export");
  if (!r.ok) { setStatus("The export failed (" + r.status + ").", true); return null; }
  return await r.json();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("find");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = document.getElementById("contact-id").value.trim().replace(/^\+/, "");
    busy(form.querySelector("button"), "Finding…", () => find(id)).catch(() => setStatus("Could not reach the server.", true));
  });
  document.getElementById("show-conversation").addEventListener("click", (ev) => {
    busy(ev.target, "Loading…", async () => {
      const r = await api("/admin/contacts/" + encodeURIComponent(current) + "/conversation");
      if (!r.ok) { setStatus("The conversation could not be read (" + r.status + ").", true); return; }
      const d = await r.json();
      const ol = document.getElementById("conversation");
      ol.replaceChildren();
      for (const m of (d.messages || []).slice(-20)) {
        const li = el("li", (m.direction === "in" ? "Customer: " : "Business: ") + (m.text || "[" + m.kind + "]"));
        li.className = m.direction;
        ol.append(li);
      }
      setStatus("Conversation shown (recorded in the audit log).");
    });
  });
  document.getElementById("export").addEventListener("click", (ev) => {
    busy(ev.target, "Exporting…", async () => {
      const d = await exportData();
      if (!d) return;
      const a = document.getElementById("download");
      a.href = URL.createObjectURL(new Blob([JSON.stringify(d, null, 2)], { type: "application/json" }));
      a.hidden = false;
      setStatus("The export is ready to download.");
    });
  });
  document.getElementById("erase").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = document.getElementById("erase-confirm").value.trim().replace(/^\+/, "");
    if (typed !== current) { setStatus("The id typed does not match; nothing was erased.", true); return; }
    busy(ev.target.querySelector("button"), "Erasing…", async () => {
      const r = await api("/admin/contacts/" + encodeURIComponent(current), { method: "DELETE" });
      if (!r.ok) { setStatus("The erasure failed (" + r.status + ").", true); return; }
      if (r.status === 202) {
        // A legal hold: the erasure waits for its end.
        const held = await r.json();
        setStatus(held.message || "The contact is under a legal hold: nothing was erased yet.", true);
        return;
      }
      document.getElementById("contact").hidden = true;
      setStatus("Erased: nothing is kept about " + current + " any more.");
      current = null;
    });
  });
});

// How long ago / how long, in words.
function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return Math.round(s / 3600) + " h";
  return Math.floor(s / 86400) + " d";
}

async function json(r) {
  return r.json().catch(() => ({}));
}

// Campaigns page.
let shownCampaign = null;

async function loadCampaigns() {
  const r = await api("/admin/campaigns");
  const d = await json(r);
  if (!r.ok) { setStatus(d.error || "Could not load the campaigns (" + r.status + ").", true); return; }
  const tbody = document.getElementById("campaigns");
  if (tbody.contains(document.activeElement)) return;
  tbody.replaceChildren();
  const rows = (d.campaigns || []).slice().sort((a, b) => b.created_at - a.created_at);
  for (const c of rows) {
    const tr = el("tr");
    const open = el("button", "Report");
    open.type = "button";
    open.className = "link";
    open.setAttribute("aria-label", "Report of " + c.name);
    open.addEventListener("click", () => {
      shownCampaign = c.id;
      showReport().then(() => document.getElementById("report").scrollIntoView({ block: "start" })).catch(() => {});
    });
    const cell = el("td");
    cell.append(open);
    tr.append(el("td", c.name), el("td", c.template), el("td", c.status), el("td", c.targeted), el("td", when(c.created_at)), cell);
    tbody.append(tr);
  }
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "No campaigns yet.");
    td.colSpan = 6;
    tr.append(td);
    tbody.append(tr);
  }
}

function sum(o) { return Object.values(o || {}).reduce((a, b) => a + b, 0); }

function detailOf(o) {
  return Object.entries(o || {}).filter(([, v]) => v > 0).map(([k, v]) => k + " " + v).join(", ");
}

async function showReport() {
  if (!shownCampaign) return;
  const r = await api("/admin/campaigns/" + encodeURIComponent(shownCampaign));
  const d = await json(r);
  const box = document.getElementById("report");
  if (!r.ok) { setStatus(d.error || "Could not load the report (" + r.status + ").", true); return; }
  box.hidden = false;
  document.getElementById("report-title").textContent = "Report: " + d.name + " (" + d.template.name + ")";
  const cards = document.getElementById("report-cards");
  cards.replaceChildren();
  const figures = [["Status", d.status, "r-status"], ["Targeted", d.targeted, "r-targeted"], ["Waiting", d.waiting, "r-waiting"],
    ["Queued", d.queued, "r-queued"], ["Sent", d.sent, "r-sent"], ["Delivered", d.delivered, "r-delivered"], ["Read", d.read, "r-read"],
    ["Failed", sum(d.failed), "r-failed", detailOf(d.failed)], ["Skipped", sum(d.skipped), "r-skipped", detailOf(d.skipped)],
    ["Cancelled", d.cancelled, "r-cancelled"], ["Opt-outs", d.opt_outs, "r-opt-outs"]];
  for (const [label, value, id, more] of figures) {
    const card = el("div");
    card.className = "card";
    const l = el("span", label); l.className = "label";
    const v = el("span", value); v.className = "value"; v.id = id;
    card.append(l, v);
    if (more) { const m = el("span", more); m.className = "label"; card.append(m); }
    cards.append(card);
  }
  const cancel = document.getElementById("cancel");
  // Nothing left to cancel once everything was sent (or cancelled).
  cancel.hidden = d.status === "cancelled" || (d.status === "dispatched" && d.waiting === 0 && d.queued === 0);
  document.getElementById("report-updated").textContent = "Live: updated " + new Date().toLocaleTimeString();
}

function campaignBody() {
  const v = (id) => document.getElementById(id).value.trim();
  const checked = (name) => document.querySelector('input[name="' + name + '"]:checked').value;
  const body = {
    name: v("c-name"),
    template: { name: v("c-template"), language: { code: v("c-language") }, components: [] },
    opt_out: checked("optout") === "text" ? { text: true } : { button: Number(v("c-button")) },
  };
  if (v("c-start")) body.send_at = new Date(v("c-start")).toISOString().replace(/\.\d{3}Z$/, "Z");
  if (checked("audience") === "tags") {
    body.audience = { tags: v("c-tags").split(",").map(t => t.trim()).filter(Boolean) };
  } else {
    // One number per line (or separated by commas or semicolons), written
    // as people do: "+44 7700 900123", "(650) 555-0101".
    body.audience = { wa_ids: v("c-list").split(/[\n,;]+/).map(n => n.replace(/[\s\-.()+]/g, "")).filter(Boolean) };
  }
  return body;
}

// Audit page: newest first, a page at a time ("Older" reads on from the
// last page's cursor). Only the latest request's answer is shown (an
// earlier, slower one must not overwrite a filter's result).
let auditRun = 0;
let auditNext = null;
let auditShown = 0;
async function loadAudit(older) {
  const mine = ++auditRun;
  const q = new URLSearchParams();
  const v = (id) => document.getElementById(id).value.trim();
  if (v("f-contact")) q.set("contact", v("f-contact").replace(/^\+/, ""));
  if (v("f-kind")) q.set("kind", v("f-kind"));
  if (v("f-from")) q.set("from", String(Date.parse(v("f-from") + "T00:00:00Z") / 1000));
  if (v("f-to")) q.set("to", String(Date.parse(v("f-to") + "T23:59:59Z") / 1000));
  q.set("limit", "200");
  if (older === true && auditNext) q.set("before", auditNext);
  const r = await api("/admin/audit?" + q.toString());
  const d = await json(r);
  if (mine !== auditRun) return;
  if (!r.ok) { setStatus(d.error || "Could not read the log (" + r.status + ").", true); return; }
  const chain = document.getElementById("chain");
  const c = d.chain;
  if (!c.intact) {
    chain.textContent = "The hash chain is BROKEN at entry " + c.broken_at + ": the log was altered or cut there.";
    chain.className = "chain broken";
  } else if (c.complete) {
    chain.textContent = "The hash chain verifies: " + c.log_entries + " entries, none removed, reordered or altered.";
    chain.className = "chain ok";
  } else if (c.head_matches) {
    chain.textContent = "The hash chain verifies from the newest entry (the stored head, #" + c.log_entries + ") down to #" + c.verified_from + ": " + c.verified_entries + " entries checked; older pages are checked as you read them.";
    chain.className = "chain ok";
  } else {
    chain.textContent = "The hash chain verifies from #" + c.verified_to + " down to #" + c.verified_from + ", linked to the page before.";
    chain.className = "chain ok";
  }
  const tbody = document.getElementById("entries");
  if (older !== true) { tbody.replaceChildren(); auditShown = 0; }
  for (const e of d.entries) {
    const tr = el("tr");
    // A request open for over a week, as on the requests page.
    if (e.overdue) tr.className = "due";
    tr.append(el("td", e.seq), el("td", when(e.at)), el("td", e.kind), el("td", e.contact || ""),
      el("td", e.actor), el("td", e.detail || ""));
    tbody.append(tr);
  }
  auditShown += d.entries.length;
  auditNext = d.next;
  document.getElementById("older").hidden = !auditNext;
  setStatus(auditNext
    ? "Showing the newest " + auditShown + " matching entries; Older reads on."
    : auditShown + " matching " + (auditShown === 1 ? "entry" : "entries") + ".");
}

// Flows page: files, errors, diagrams.
async function loadFlows() {
  const r = await api("/console/api/flows");
  const d = await json(r);
  if (!r.ok) { setStatus(d.error || "Could not check the flows (" + r.status + ").", true); return; }
  const errors = document.getElementById("flow-errors");
  errors.replaceChildren();
  for (const e of d.errors) errors.append(el("li", e));
  const tbody = document.getElementById("flows");
  tbody.replaceChildren();
  for (const f of d.files) {
    const tr = el("tr");
    const check = el("td");
    if (f.errors.length) {
      const ul = el("ul");
      ul.className = "errors";
      for (const e of f.errors) ul.append(el("li", e));
      check.append(ul);
    } else {
      check.textContent = f.file ? "valid" : "in force; no readable file names it now";
    }
    const inForce = f.in_force;
    const starts = inForce ? [inForce.default ? "any first message" : null, ...inForce.keywords].filter(Boolean).join(", ") : "";
    const cell = el("td");
    if (inForce) {
      const b = el("button", "Diagram");
      b.type = "button";
      b.className = "link";
      b.setAttribute("aria-label", "Diagram of " + f.flow);
      b.addEventListener("click", () => showDiagram(f.flow, inForce.outline || []));
      cell.append(b);
    }
    tr.append(el("td", f.file || "—"), el("td", f.flow || "?"), el("td", starts), el("td", inForce ? inForce.steps : ""), check, cell);
    tbody.append(tr);
  }
  if (d.valid) {
    setStatus("Every flow file is valid (" + d.files.length + " flows in force).");
  } else {
    setStatus("The flow files have errors: the last good flows stay in force until they are fixed.", true);
  }
}

function showDiagram(id, outline) {
  const ol = document.getElementById("outline");
  ol.replaceChildren();
  for (const s of outline) {
    const li = el("li");
    li.append(el("strong", s.step), ": " + s.does);
    const goes = el("ul");
    for (const g of s.goes) goes.append(el("li", (g.when ? g.when + " → " : "then → ") + g.to));
    li.append(goes);
    ol.append(li);
  }
  const box = document.getElementById("diagram-box");
  const img = document.getElementById("diagram");
  document.getElementById("diagram-title").textContent = "Diagram: " + id;
  img.alt = "Diagram of the flow " + id + ": its steps and transitions";
  img.onerror = () => setStatus("The diagram of " + id + " could not be drawn.", true);
  img.src = "/console/flows/" + encodeURIComponent(id) + "/diagram.svg?t=" + Date.now();
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

// Flows page: the simulator.
function chatLine(text, cls) {
  const li = el("li", text);
  if (cls) li.className = cls;
  document.getElementById("chat").append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function choiceButton(id, title) {
  const b = el("button", title);
  b.type = "button";
  b.addEventListener("click", () => simulate({ choice: { id, title } }, title));
  return b;
}

function showEffect(e) {
  if (e.effect === "send") {
    const m = e.message;
    if (m.type === "text") return chatLine(m.body);
    if (m.type === "buttons" || m.type === "list") {
      const li = chatLine("");
      if (m.header) li.append(el("strong", m.header), el("br"));
      li.append(m.body);
      if (m.footer) li.append(el("span", m.footer));
      if (m.footer) li.lastChild.className = "meta";
      const choices = el("div");
      choices.className = "choices";
      if (m.type === "buttons") {
        for (const [id, title] of m.buttons) choices.append(choiceButton(id, title));
      } else {
        const details = el("details");
        details.append(el("summary", m.button));
        for (const s of m.sections) {
          if (s.title) details.append(el("span", s.title));
          for (const [id, title, description] of s.rows) {
            const b = choiceButton(id, title);
            if (description) b.title = description;
            details.append(b);
          }
        }
        choices.append(details);
      }
      li.append(choices);
      return li;
    }
    if (m.type === "media") return chatLine("[" + m.kind + "] " + (m.caption || m.filename || m.link));
    if (m.type === "template") return chatLine("[template " + m.name + " (" + m.language + ")]");
    return chatLine("[" + m.type + "]");
  }
  const notes = {
    set_name: () => "The customer's name is set to " + e.name + ".",
    add_tag: () => "Tag added: " + e.tag + ".",
    remove_tag: () => "Tag removed: " + e.tag + ".",
    action: () => "Action " + e.action + (e.purpose ? " (" + e.purpose + ")" : "") + ": in a real chat whatsify does it now; the simulator does not.",
    budget_exceeded: () => "The flows ran too many steps at " + e.flow + "/" + e.step + ": a loop to fix.",
  };
  return chatLine((notes[e.effect] || (() => e.effect))(), "note");
}

async function simulate(body, said) {
  const form = document.getElementById("sim-send");
  const button = form.querySelector("button");
  if (said) chatLine(said, "customer");
  await busy(button, "Sending…", async () => {
    const r = await api("/console/api/simulator", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const d = await json(r);
    if (!r.ok) { chatLine(d.error || "The simulator failed (" + r.status + ").", "note"); return; }
    if (d.privacy_command) {
      chatLine("“" + said + "” is the privacy command " + d.privacy_command + ": in a real chat whatsify answers it before the flows. The simulator does not run it.", "note");
    } else if (!d.effects.length && !body.reset) {
      chatLine("(no answer: the flows stay quiet)", "note");
    }
    for (const e of d.effects) showEffect(e);
  }).catch(() => chatLine("Could not reach the server.", "note"));
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("campaigns")) {
    loadCampaigns().catch(() => setStatus("Could not reach the server.", true));
    // The report is live; the list follows a little more slowly.
    let ticks = 0;
    setInterval(() => {
      if (!shownCampaign) return;
      showReport().catch(() => {});
      if (++ticks % 3 === 0) loadCampaigns().catch(() => {});
    }, 2000);
    const form = document.getElementById("new-campaign");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      busy(form.querySelector("button[type=submit]"), "Creating…", async () => {
        const r = await api("/admin/campaigns", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(campaignBody()),
        });
        const d = await json(r);
        if (!r.ok) { setStatus(d.error || "The campaign was not created (" + r.status + ").", true); return; }
        setStatus("Campaign created: " + d.targeted + " contacts targeted. Its report updates live below.");
        shownCampaign = d.id;
        await loadCampaigns();
        await showReport();
        document.getElementById("report").scrollIntoView({ block: "start" });
      }).catch(() => setStatus("Could not reach the server.", true));
    });
    const cancel = document.getElementById("cancel");
    cancel.addEventListener("click", () => {
      busy(cancel, "Cancelling…", async () => {
        const r = await api("/admin/campaigns/" + encodeURIComponent(shownCampaign), { method: "DELETE" });
        const d = await json(r);
        if (!r.ok) { setStatus(d.error || "The campaign was not cancelled (" + r.status + ").", true); return; }
        setStatus("Cancelled: nothing more of it will be sent.");
        await loadCampaigns();
        await showReport();
      }).catch(() => setStatus("Could not reach the server.", true));
    });
  }
  if (document.getElementById("entries")) {
    const params = new URLSearchParams(window.location.search);
    if (params.get("contact")) document.getElementById("f-contact").value = params.get("contact");
    const form = document.getElementById("filters");
    const run = () => busy(form.querySelector("button"), "Filtering…", loadAudit).catch(() => setStatus("Could not reach the server.", true));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
    const olderButton = document.getElementById("older");
    olderButton.addEventListener("click", () => busy(olderButton, "Reading…", () => loadAudit(true)).catch(() => setStatus("Could not reach the server.", true)));
    run();
  }
  if (document.getElementById("flows")) {
    loadFlows().catch(() => setStatus("Could not reach the server.", true));
    simulate({ reset: true, name: document.getElementById("sim-name").value });
    document.getElementById("sim-reset").addEventListener("submit", (ev) => {
      ev.preventDefault();
      document.getElementById("chat").replaceChildren();
      simulate({ reset: true, name: document.getElementById("sim-name").value }).then(() => chatLine("A new conversation. Say something to start.", "note"));
    });
    document.getElementById("sim-send").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("sim-text");
      const text = input.value;
      if (!text.trim()) return;
      input.value = "";
      simulate({ text }, text).then(() => input.focus());
    });
  }
});

// The account page: the operator's API tokens; for an owner, the operators.
async function loadTokens() {
  const r = await api("/admin/tokens");
  const tbody = document.getElementById("tokens");
  tbody.replaceChildren();
  if (r.status === 409) { tbody.append(el("tr", "The admin token has no API tokens: sign in as an operator.")); return; }
  if (!r.ok) { setStatus("The tokens could not be read (" + r.status + ").", true); return; }
  for (const t of (await r.json()).tokens || []) {
    const tr = el("tr");
    tr.dataset.name = t.name;
    const revoke = el("button", "Revoke");
    revoke.type = "button";
    revoke.addEventListener("click", () => busy(revoke, "Revoking…", async () => {
      const d = await api("/admin/tokens/" + encodeURIComponent(t.id), { method: "DELETE" });
      setStatus(d.ok ? "Token " + t.name + " revoked." : "Not revoked (" + d.status + ").", !d.ok);
      await loadTokens();
    }));
    const cell = el("td");
    cell.append(revoke);
    tr.append(el("td", t.name), el("td", when(t.created)), el("td", when(t.expires)), cell);
    tbody.append(tr);
  }
}

async function loadOperators() {
  const r = await api("/admin/operators");
  if (!r.ok) return;
  document.getElementById("operators-box").hidden = false;
  const tbody = document.getElementById("operators");
  tbody.replaceChildren();
  for (const o of (await r.json()).operators || []) {
    const tr = el("tr");
    tr.dataset.email = o.email;
    const state = o.disabled ? "disabled" : (o.enrolled ? "enrolled" : "waiting for enrolment");
    const actions = el("td");
    for (const [label, what] of [["Disable", "disable"], ["Reset", "reset"]]) {
      const b = el("button", label);
      b.type = "button";
      b.className = what;
      b.addEventListener("click", () => busy(b, label + "…", async () => {
        const d = await api("/admin/operators/" + encodeURIComponent(o.id) + "/" + what, { method: "POST" });
        const body = await d.json().catch(() => ({}));
        if (!d.ok) { setStatus(body.error || ("Refused (" + d.status + ")."), true); return; }
        if (body.enrolment_url) showLink(body.enrolment_url);
        setStatus(o.email + (what === "disable" ? " is disabled: their sessions and tokens ended." : " is reset: send them the new link."));
        await loadOperators();
      }));
      actions.append(b, " ");
    }
    tr.append(el("td", o.email), el("td", o.role), el("td", o.role === "owner" ? "every business" : (o.businesses || []).join(", ")), el("td", state), el("td", when(o.last_sign_in)), actions);
    tbody.append(tr);
  }
}

function showLink(url) {
  const full = url.startsWith("/") ? window.location.origin + url : url;
  document.getElementById("enrolment-link").textContent = full;
  document.getElementById("enrolment-shown").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("new-token");
  if (!form) return;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(form.querySelector("button"), "Creating…", async () => {
      const body = { name: document.getElementById("t-name").value.trim(), days: Number(document.getElementById("t-days").value) };
      const r = await api("/admin/tokens", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const d = await r.json().catch(() => ({}));
      if (!r.ok) { setStatus(d.error || ("Not created (" + r.status + ")."), true); return; }
      document.getElementById("new-token-value").textContent = d.token;
      document.getElementById("new-token-shown").hidden = false;
      setStatus("Token " + d.name + " created.");
      await loadTokens();
    });
  });
  const add = document.getElementById("new-operator");
  add.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(add.querySelector("button"), "Adding…", async () => {
      const businesses = document.getElementById("o-businesses").value.split(",").map((s) => s.trim()).filter(Boolean);
      const body = { email: document.getElementById("o-email").value.trim(), role: document.getElementById("o-role").value, businesses };
      const r = await api("/admin/operators", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const d = await r.json().catch(() => ({}));
      if (!r.ok) { setStatus(d.error || ("Not added (" + r.status + ")."), true); return; }
      showLink(d.enrolment_url);
      setStatus(d.operator.email + " added.");
      await loadOperators();
    });
  });
  loadTokens().catch(() => setStatus("Could not reach the server.", true));
  loadOperators().catch(() => {});
});
