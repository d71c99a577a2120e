"use strict";
// Campaigns and the queue of planned runs (refreshed every 5 s).
(function () {
  const camp = document.getElementById("campaigns"), queue = document.getElementById("queue");
  function table(head, rows) {
    const t = lab.el("table", null, "list");
    const thead = lab.el("thead"); thead.appendChild(lab.row(head.map((h) => lab.el("th", h)))); t.appendChild(thead);
    const tb = lab.el("tbody"); lab.fill(tb, rows); t.appendChild(tb);
    return t;
  }
  async function load() {
    let d;
    try { d = await lab.json("/api/campaigns"); } catch (e) { camp.textContent = `cannot read campaigns: ${e.message}`; return; }
    if (!d.available || !d.campaigns.length) {
      camp.replaceChildren(lab.el("p", "no campaigns", "none"));
      queue.replaceChildren(lab.el("p", "the queue is empty", "none"));
      return;
    }
    camp.replaceChildren(table(["id", "name", "created", "planned runs by state"], d.campaigns.map((c) =>
      lab.row([c.id, c.name, lab.when(c.created_unix), Object.entries(c.states || {}).map(([s, k]) => `${s} ${k}`).join(", ") || "–"]))));
    if (!d.queue.length) { queue.replaceChildren(lab.el("p", "the queue is empty", "none")); return; }
    queue.replaceChildren(table(["campaign", "key", "station", "channel", "state", "control", "run", "priority"], d.queue.map((q) => {
      const run = lab.el("td");
      if (q.run_id) { const a = lab.el("a", q.run_id); a.href = `/runs/${q.run_id}`; run.appendChild(a); } else run.textContent = "–";
      return lab.row([q.campaign || q.campaign_id, q.key, q.station || "–", q.channel || "–", q.state, q.control || "–", run, q.priority ?? "–"]);
    })));
  }
  load();
  setInterval(load, 5000);
})();
