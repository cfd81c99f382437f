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
