"use strict";
// Shared helpers of the dashboard pages: JSON fetch, server-sent events, formatting, safe DOM text.
const lab = {
  async json(url, opts) {
    const r = await fetch(url, opts);
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
      const err = new Error(`${r.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
      err.status = r.status;
      throw err;
    }
    return r.json();
  },
  // Subscribe to an SSE stream; onData(parsed JSON).  Shows the connection state in #live.
  live(url, onData) {
    const badge = document.getElementById("live");
    const es = new EventSource(url);
    es.onopen = () => { if (badge) { badge.textContent = "live"; badge.className = "live on"; } };
    es.onerror = () => { if (badge) { badge.textContent = "reconnecting…"; badge.className = "live off"; } };
    es.onmessage = (ev) => { onData(JSON.parse(ev.data)); };
    es.addEventListener("gone", () => es.close());
    return es;
  },
  el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  },
  row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : lab.el("td", c));
    return tr;
  },
  fill(tbody, rows) { tbody.replaceChildren(...rows); },
  dur(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const hms = `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}`;
    return d ? `${d} d ${hms}` : hms;
  },
  when(unix) {
    if (unix === null || unix === undefined) return "–";
    const d = new Date(unix * 1000);
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  },
  volts(v) { return v === null || v === undefined ? "–" : `${v.toFixed(4)} V`; },
  amps(i) {
    if (i === null || i === undefined) return "–";
    const a = Math.abs(i);
    if (a >= 1e-3 || a === 0) return `${(i * 1e3).toFixed(3)} mA`;
    if (a >= 1e-6) return `${(i * 1e6).toFixed(2)} µA`;
    return `${(i * 1e9).toFixed(1)} nA`;
  },
  num(x, digits = 4) { return x === null || x === undefined ? "–" : Number(x).toPrecision(digits); },
};
