"use strict";
// The run page: voltage-time (decimated on the server, extremes kept), latest EIS and Tafel
// with fits, CE and hysteresis per cycle, events, coatings, results, steps, exports, control.
// Live: /api/runs/{id}/stream says what changed; only that is fetched again.
(function () {
  const runId = Number(location.pathname.split("/").filter(Boolean).pop());
  const $ = (id) => document.getElementById(id);
  const plots = {};
  const width = (el) => Math.max(320, Math.min(el.clientWidth || 900, 1400));

  function plot(name, target, opts, data) {
    if (plots[name]) { plots[name].setData(data); return plots[name]; }
    const el = $(target);
    const u = new uPlot(Object.assign({ width: width(el), height: opts.height || 300 }, opts), data, el);
    plots[name] = u;
    return u;
  }
  const noLine = () => null;

  // ---------------------------------------------------------------- voltage trace
  let traceBusy = false, traceAgain = false;
  async function loadTrace() {
    if (traceBusy) { traceAgain = true; return; }
    traceBusy = true;
    try {
      const w = width($("trace"));
      const tr = await lab.json(`/api/runs/${runId}/trace?bins=${Math.max(200, Math.round(w))}`);
      const tmax = tr.t.length ? tr.t[tr.t.length - 1] : 0;
      const hours = tmax > 7200, div = hours ? 3600 : 1;
      const x = tr.t.map((t) => t / div);
      $("trace-note").textContent = tr.envelope
        ? `${tr.n_samples.toLocaleString()} samples; drawn as the minimum and maximum of every ${tr.bucket.toLocaleString()} samples (no spike is averaged away)`
        : `${tr.n_samples.toLocaleString()} samples, every one drawn`;
      const u = plot("trace", "trace", {
        height: 320,
        scales: { x: { time: false } },
        series: [{ label: hours ? "t / h" : "t / s" }, { label: "voltage / V", stroke: "#1565c0", width: 1 }],
        axes: [{ label: hours ? "test time / h" : "test time / s" }, { label: "voltage / V" }],
      }, [x, tr.voltage]);
      if (!document.body.dataset.plotted) {
        window.labFirstPlotMs = performance.now();
        document.body.dataset.plotted = String(tr.n_samples);
      }
      document.body.dataset.traceN = String(tr.n_samples);
      return u;
    } catch (e) {
      $("trace-note").textContent = `cannot read the trace: ${e.message}`;
    } finally {
      traceBusy = false;
      if (traceAgain) { traceAgain = false; setTimeout(loadTrace, 1000); }
    }
  }

  // ---------------------------------------------------------------- EIS, Tafel, cycles
  async function loadEis() {
    const d = await lab.json(`/api/runs/${runId}/eis`);
    if (!d.frequency.length) return;
    $("eis-sec").hidden = false;
    const fitTxt = Object.entries(d.fitted).map(([k, v]) => `${k} = ${lab.num(v)} Ω`).join(", ");
    $("eis-note").textContent = `step ${d.step_index}, cycle ${d.cycle}` + (d.circuit ? `; fit ${d.circuit}: ${fitTxt}` : "; no fit stored");
    const pts = d.z_re.map((r, k) => [r, -d.z_im[k]]).sort((a, b) => a[0] - b[0]);
    const tables = [[pts.map((p) => p[0]), pts.map((p) => p[1])]];
    const series = [{ label: "Z′ / Ω" }, { label: "data −Z″ / Ω", stroke: "#c62828", paths: noLine, points: { show: true, size: 6, space: 0 } }];
    if (d.fit) {
      const fp = d.fit.z_re.map((r, k) => [r, -d.fit.z_im[k]]).sort((a, b) => a[0] - b[0]);
      tables.push([fp.map((p) => p[0]), fp.map((p) => p[1])]);
      series.push({ label: "fit", stroke: "#222", width: 1.5, spanGaps: true, points: { show: false } });
    }
    plot("nyquist", "nyquist", { height: 300, scales: { x: { time: false } }, series, axes: [{ label: "Z′ / Ω" }, { label: "−Z″ / Ω" }] },
      tables.length > 1 ? uPlot.join(tables) : tables[0]);
    const order = d.frequency.map((f, k) => k).sort((a, b) => d.frequency[a] - d.frequency[b]);
    const f = order.map((k) => d.frequency[k]);
    const mod = order.map((k) => Math.hypot(d.z_re[k], d.z_im[k]));
    const ph = order.map((k) => -Math.atan2(d.z_im[k], d.z_re[k]) * 180 / Math.PI);
    plot("bode", "bode", {
      height: 300,
      scales: { x: { time: false, distr: 3 }, y: { distr: 3 }, deg: {} },
      series: [{ label: "f / Hz" }, { label: "|Z| / Ω", stroke: "#1565c0", points: { show: true, size: 5, space: 0 } },
        { label: "−phase / °", stroke: "#ef6c00", scale: "deg", points: { show: true, size: 5, space: 0 } }],
      axes: [{ label: "frequency / Hz" }, { label: "|Z| / Ω" }, { label: "−phase / °", scale: "deg", side: 1, grid: { show: false } }],
    }, [f, mod, ph]);
  }

  async function loadTafel() {
    const d = await lab.json(`/api/runs/${runId}/tafel`);
    if (!d.eta.length) return;
    $("tafel-sec").hidden = false;
    const series = [{ label: "η / V" }, { label: "log10 |j| / A cm⁻²", stroke: "#2e7d32", width: 1 }];
    const data = [d.eta, d.log_j];
    if (d.fit_line) { series.push({ label: "Tafel fit", stroke: "#222", dash: [6, 4] }); data.push(d.fit_line); }
    plot("tafel", "tafel", { height: 300, scales: { x: { time: false } }, series, axes: [{ label: "overpotential / V" }, { label: "log10 |j|" }] }, data);
  }

  async function loadCycles() {
    const d = await lab.json(`/api/runs/${runId}/cycles`);
    if (!d.ce && !d.hysteresis) return;
    $("cycles-sec").hidden = false;
    if (d.ce) plot("ce", "ce", { height: 260, scales: { x: { time: false } },
      series: [{ label: "cycle" }, { label: "CE / %", stroke: "#6a1b9a", points: { show: true, size: 5, space: 0 } }],
      axes: [{ label: "cycle" }, { label: "coulombic efficiency / %" }] }, [d.ce.x, d.ce.y]);
    if (d.hysteresis) plot("hyst", "hyst", { height: 260, scales: { x: { time: false } },
      series: [{ label: "cycle" }, { label: "hysteresis / mV", stroke: "#00838f", points: { show: true, size: 5, space: 0 } }],
      axes: [{ label: "cycle" }, { label: "voltage hysteresis / mV" }] }, [d.hysteresis.x, d.hysteresis.y]);
  }

  // ---------------------------------------------------------------- tables
  async function loadDetail() {
    const d = await lab.json(`/api/runs/${runId}`);
    const r = d.run;
    document.title = `labctl: run ${r.id}`;
    const title = $("title"); title.replaceChildren(lab.el("span", `Run ${r.id}: ${r.protocol || ""} `), lab.el("span", r.status, `st ${r.status}`));
    $("summary").textContent = `cell ${r.cell || "–"}, channel ${r.station ? r.station + "/" : ""}${r.channel}` +
      `${r.simulated ? `, simulated (${r.preset || "preset"})` : ""}; started ${lab.when(r.started)}` +
      `${r.ended ? `, ended ${lab.when(r.ended)} (${r.end_reason || ""})` : ""}; ${r.n_samples.toLocaleString()} samples`;
    lab.fill($("results").tBodies[0], d.results.map((x) => lab.row([x.name, lab.num(x.value, 5), x.unit || "", x.uncertainty === null ? "" : lab.num(x.uncertainty, 2), x.method || "", x.step_index ?? "run"])));
    lab.fill($("events").tBodies[0], d.events.map((e) => lab.row([lab.dur(e.t), e.kind, e.message])));
    lab.fill($("steps").tBodies[0], d.steps.map((s) => lab.row([s.step_index, s.path, s.kind, s.label || "", s.cycle, lab.dur(s.t_start), s.t_end === null ? "running" : lab.dur(s.t_end), s.end_reason || "", s.n_samples ?? "…"])));
    $("coat-sec").hidden = !d.coatings.length;
    lab.fill($("coatings").tBodies[0], d.coatings.map((c) => lab.row([c.cell_label, c.solution || "", c.concentration || "",
      c.immersion_start ? `${lab.when(c.immersion_start)} – ${lab.when(c.immersion_end)}` : "–", c.rinse_solution || "", c.mode || "", c.operator || "", c.notes || ""])));
    const ex = $("exports"); ex.replaceChildren();
    for (const [fmt, url] of Object.entries(d.exports)) { const a = lab.el("a", `${fmt.toUpperCase()} (BDF columns)`); a.href = url; ex.appendChild(a); ex.appendChild(document.createTextNode("  ")); }
    $("control-sec").hidden = r.status !== "running";
    return d;
  }

  // ---------------------------------------------------------------- control
  $("control").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const action = ev.submitter ? ev.submitter.value : "pause";
    const msg = $("control-msg");
    const token = $("token").value;
    try {
      const r = await lab.json(`/api/runs/${runId}/control`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-Labctl-Token": token },
        body: JSON.stringify({ action }),
      });
      msg.textContent = `${r.action} requested (#${r.seq}); the worker applies it at the next step or block`;
    } catch (e) { msg.textContent = e.message; }
  });

  // ---------------------------------------------------------------- live
  const safe = (p) => p.catch((e) => console.warn(e.message));
  let last = null;
  // the voltage plot first: the tables of a long run (thousands of steps) would hold the page's one thread
  safe(loadTrace()).then(() => { safe(loadDetail()); safe(loadEis()); safe(loadTafel()); safe(loadCycles()); });
  lab.live(`/api/runs/${runId}/stream`, (s) => {
    if (last) {
      if (s.n_samples !== last.n_samples) safe(loadTrace());
      if (s.steps !== last.steps || s.events !== last.events || s.results !== last.results || s.status !== last.status || s.n_samples !== last.n_samples) safe(loadDetail());
      if (s.steps !== last.steps || s.results !== last.results) { safe(loadEis()); safe(loadTafel()); safe(loadCycles()); }
    }
    last = s;
  });
})();
