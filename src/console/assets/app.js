// The console's script: no framework, no third-party code. It reads the
// CSRF token from the page and sends it with every request that changes
// something; the session cookie travels by itself (same origin).
"use strict";

const csrf = () => {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
};

async function api(path, options = {}) {
  const headers = Object.assign({ "X-CSRF-Token": csrf() }, options.headers || {});
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options, { headers }));
  if (r.status === 401) {
    window.location.assign("/console");
    throw new Error("signed out");
  }
  return r;
}

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
    status.textContent = "Updated " + new Date().toLocaleTimeString();
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

function setStatus(text, error) {
  const s = document.getElementById("status");
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
      const d = await exportData();
      if (!d) return;
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
      document.getElementById("contact").hidden = true;
      setStatus("Erased: nothing is kept about " + current + " any more.");
      current = null;
    });
  });
});
