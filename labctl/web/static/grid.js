"use strict";
// The channel grid: one row per channel, redrawn from /api/grid/stream (server-sent events).
(function () {
  const tbody = document.querySelector("#grid tbody");
  const rows = new Map(); // key -> tr

  function key(c) { return `${c.station || ""}\u0000${c.channel}`; }

  function cells(c) {
    const link = lab.el("td"); const a = lab.el("a", c.run_id); a.href = `/runs/${c.run_id}`; link.appendChild(a);
    const st = lab.el("td"); st.appendChild(lab.el("span", c.status, `st ${c.status}`));
    if (c.status === "stalled" && c.heartbeat_age_s !== null) st.appendChild(lab.el("span", ` ${lab.dur(c.heartbeat_age_s)} silent`, "note"));
    return [
      c.station || "–", c.channel, c.cell || "–", link, c.protocol, st, c.step || "–",
      c.cycle === null ? "–" : c.cycle,
      lab.el("td", lab.volts(c.voltage), "num v"), lab.el("td", lab.amps(c.current), "num i"),
      lab.el("td", lab.dur(c.elapsed_s), "num"), lab.el("td", lab.when(c.estimated_end_unix), "num"),
      lab.el("td", c.n_samples, "num n"),
    ];
  }

  function draw(channels) {
    const seen = new Set();
    if (!channels.length) { lab.fill(tbody, [lab.row([Object.assign(lab.el("td", "no runs in this database yet"), { colSpan: 13 })])]); rows.clear(); return; }
    const order = [];
    for (const c of channels) {
      const k = key(c); seen.add(k);
      let tr = rows.get(k);
      const fresh = lab.row(cells(c));
      fresh.dataset.channel = c.channel; fresh.dataset.station = c.station || "";
      fresh.dataset.run = c.run_id; fresh.dataset.n = c.n_samples; fresh.dataset.status = c.status;
      fresh.className = `ch ${c.status}`;
      if (tr && tr.dataset.n !== String(c.n_samples)) fresh.classList.add("flash");
      rows.set(k, fresh); order.push(fresh);
    }
    for (const k of [...rows.keys()]) if (!seen.has(k)) rows.delete(k);
    lab.fill(tbody, order);
    document.body.dataset.updated = String(Date.now());
  }

  lab.json("/api/grid").then((g) => draw(g.channels)).catch((e) => {
    lab.fill(tbody, [lab.row([Object.assign(lab.el("td", `cannot read the grid: ${e.message}`), { colSpan: 13 })])]);
  });
  lab.live("/api/grid/stream", draw);
})();
