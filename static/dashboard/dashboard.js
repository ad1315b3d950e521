/* Live experiment dashboard: a snapshot on connect, then stats events; reconnects with backoff.
 *
 * The fold of events into the snapshot mirrors experiments.selectors.dashboard.dashboard_state_apply,
 * which the server tests prove equal to a fresh snapshot.
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const HISTORY_POINTS = 720;
  const KINDS = ["ctr", "traffic", "p_best", "learning", "preference"];
  const BACKOFF_MS = 500;
  const BACKOFF_MAX_MS = 15000;

  const debug = { messages: 0, snapshots: 0, reconnects: 0, lastSeq: 0 };
  window.recsiteDashboard = debug;

  let state = null;
  let historyLength = 0;
  let drawnMarkers = null;
  let socket = null;
  let attempt = 0;

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const pct = (v, d = 2) => (isNum(v) ? (v * 100).toFixed(d) + "%" : "—");
  const signed = (v, d = 1) => (isNum(v) ? (v >= 0 ? "+" : "") + (v * 100).toFixed(d) + "%" : "—");
  const pval = (v) => (isNum(v) ? (v < 0.001 ? "<0.001" : v.toFixed(3)) : "—");
  const int = (v) => (isNum(v) ? Math.round(v).toLocaleString("en-US") : "—");
  const num = (v, d = 3) => (isNum(v) ? v.toFixed(d) : "—");
  const secs = (v) => (isNum(v) ? (v < 90 ? v.toFixed(0) + " s" : (v / 60).toFixed(0) + " min") : "—");

  function setStatus(kind, text) {
    const el = $("ws-status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function actionLink(armName, action, label) {
    const url = config.armActionUrl.replace("/0/", "/" + config.armIds[armName] + "/").replace("ACTION", action);
    return el("a", { href: url, class: "action " + action, "data-action": action }, label);
  }

  // The newest off-policy estimate (manage.py evaluate_offline) next to the live CTR.
  function offlineText(o) {
    if (!o) return "";
    if (o.insufficient_overlap) return "offline: insufficient overlap";
    if (!isNum(o.value)) return "";
    if (o.live) {  // a shadow arm: its live doubly robust estimate from the served arms' traffic
      return "shadow " + pct(o.value) + " [" + pct(o.ci_low) + ", " + pct(o.ci_high) + "] DR · ESS " + int(o.effective_sample_size) + " v" + o.model_version;
    }
    return "offline " + pct(o.value) + " [" + pct(o.ci_low) + ", " + pct(o.ci_high) + "] " + o.estimator.toUpperCase() + " v" + o.model_version;
  }

  // Interleaved experiments: the per-pair preference (payload "interleaving", experiments/selectors/interleaving.py).
  function renderPairs(stats) {
    const table = $("pairs-table");
    if (!table || !stats.interleaving) return;
    const tbody = table.querySelector("tbody");
    const rows = stats.interleaving.pairs.map((p) => {
      const tr = el("tr", { "data-pair": p.pair });
      const cells = [
        ["pair", p.pair],
        ["record", int(p.wins) + "–" + int(p.losses) + " (" + int(p.ties) + ")"],
        ["win_rate", pct(p.win_rate, 1) + (isNum(p.ci_low) ? " [" + pct(p.ci_low, 1) + ", " + pct(p.ci_high, 1) + "]" : "")],
        ["delta", signed(p.delta)],
        ["sign_p", pval(p.sign_p)],
        ["always_valid_p", pval(p.always_valid_p)],
        ["cs", "[" + pct(p.cs_low, 1) + ", " + pct(p.cs_high, 1) + "]"],
      ];
      for (const [field, text] of cells) tr.appendChild(el("td", { "data-field": field }, text));
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  // Every metric of the payload ("metrics", experiments/selectors/metrics.py), the primary first; CUPED inside CTR.
  const METRIC_LABELS = { ctr: "CTR", conversion_rate: "Conversion rate", revenue_per_user: "Revenue per user" };
  function metricValue(name, v) { return name === "revenue_per_user" ? (isNum(v) ? v.toFixed(2) : "—") : pct(v); }

  function cupedText(c) {
    if (!c) return "—";
    return pct(c.value) + " [" + pct(c.ci_low) + ", " + pct(c.ci_high) + "] · variance −" + pct(c.variance_reduction, 1);
  }

  function renderMetrics(stats) {
    const holder = $("metrics-tables");
    if (!holder || !stats.metrics) return;
    const tables = stats.metrics.map((metric) => {
      const section = el("div", { class: "metric", "data-metric": metric.name });
      section.appendChild(el("h3", {}, (METRIC_LABELS[metric.name] || metric.name) + (metric.primary ? " (primary)" : "")));
      const table = el("table", { class: "arms live", "data-testid": "metric-" + metric.name });
      const head = ["arm", "value [95% CI]", "lift [CI]", "always-valid p (Holm)", "P(best)", "users"];
      if (metric.name === "ctr") head.push("CUPED [CI] · variance reduction");
      const thead = el("thead");
      const hr = el("tr");
      for (const h of head) hr.appendChild(el("th", { scope: "col" }, h));
      thead.appendChild(hr);
      table.appendChild(thead);
      const tbody = el("tbody");
      for (const r of metric.arms) {
        const tr = el("tr", { "data-arm": r.arm });
        const cells = [
          ["arm", r.arm + (r.is_control ? " (control)" : "")],
          ["value", metricValue(metric.name, r.value) + " [" + metricValue(metric.name, r.ci_low) + ", " + metricValue(metric.name, r.ci_high) + "]"],
          ["lift", r.is_control ? "—" : signed(r.lift) + " [" + signed(r.lift_ci_low) + ", " + signed(r.lift_ci_high) + "]"],
          ["always_valid_p", r.is_control ? "—" : pval(r.always_valid_p) + " (" + pval(r.always_valid_p_holm) + ")"],
          ["p_best", pct(r.p_best, 1)],
          ["users", int(r.users)],
        ];
        if (metric.name === "ctr") cells.push(["cuped", cupedText(r.cuped)]);
        for (const [field, text] of cells) tr.appendChild(el("td", { "data-field": field }, text));
        tbody.appendChild(tr);
      }
      table.appendChild(tbody);
      section.appendChild(table);
      return section;
    });
    holder.replaceChildren(...tables);
  }

  const BREACH_FIELD = {
    latency_p95_above_bound: "latency_p95", error_rate_above_bound: "error_rate", coverage_below_bound: "coverage",
  };

  function bounded(text, bound, show) {
    return bound === null || bound === undefined ? text : text + " (bound " + show(bound) + ")";
  }

  function renderServing(stats) {
    const holder = $("serving-table");
    const section = stats.guardrail_metrics;
    if (!holder || !section) return;
    $("serving-window").textContent = section.window_minutes;
    $("serving-unavailable").hidden = section.available !== false;
    const bounds = section.bounds || {};
    const ms = (v) => (isNum(v) ? v.toFixed(1) + " ms" : "—");
    const tbody = holder.querySelector("tbody");
    const rows = section.arms.map((r) => {
      const tr = el("tr", { "data-arm": r.arm });
      const breached = new Set((r.breaches || []).map((b) => BREACH_FIELD[b]));
      const cells = [
        ["arm", r.arm],
        ["requests", int(r.requests)],
        ["latency_p50", ms(r.latency_p50_ms)],
        ["latency_p95", bounded(ms(r.latency_p95_ms), bounds.latency_p95_ms, (b) => b + " ms")],
        ["error_rate", bounded(pct(r.error_rate, 2), bounds.error_rate, (b) => pct(b, 1))],
        ["coverage", bounded(pct(r.coverage, 1) + " (" + int(r.distinct_items) + " of " + int(r.active_items) + ")",
          bounds.min_coverage, (b) => "≥ " + pct(b, 0))],
        ["breaches", (r.breaches || []).length ? r.breaches.join(", ") : "none"],
      ];
      for (const [field, text] of cells) {
        const td = el("td", { "data-field": field }, text);
        if (breached.has(field) || (field === "breaches" && breached.size)) td.classList.add("breach");
        tr.appendChild(td);
      }
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  function renderTable(stats) {
    renderPairs(stats);
    renderMetrics(stats);
    renderServing(stats);
    const report = stats.report;
    const tbody = $("arms-table").querySelector("tbody");
    const rows = [];
    for (const name of report.arm_order) {
      const r = report.arms[name];
      const m = stats.arms[name] || {};
      const tr = el("tr", { "data-arm": name, class: (m.is_winner ? "winner " : "") + (m.status || "") });
      const candidate = m.status === "active" && r.weight === 0 && !m.is_winner && !m.is_holdout;
      // [field, main text, second line]: grouped so that the table fits 1,280 px.
      const cells = [
        ["name", name + (r.is_control ? " (control)" : "") + (m.is_winner ? " ★" : ""),
          (m.is_holdout ? (m.holdout_running ? "holdout" : "holdout ended") : candidate ? "candidate" : m.status || "—")
            + (m.kind ? " · " + m.kind : "")],
        ["weight", pct(r.weight, 0)],
        ["impressions", int(r.impressions)],
        ["clicks", int(r.clicks)],
        ["ctr", pct(r.ctr) + (r.ctr_ci ? " ± " + pct((r.ctr_ci[1] - r.ctr_ci[0]) / 2) : ""), offlineText(m.offline_estimate)],
        ["lift", r.is_control ? "—" : signed(r.lift), !r.is_control && r.lift_ci ? "[" + signed(r.lift_ci[0]) + ", " + signed(r.lift_ci[1]) + "]" : ""],
        ["always_valid_p", r.is_control ? "—" : pval(r.always_valid_p), r.is_control ? "" : "Holm " + pval(r.always_valid_p_holm)],
        ["p_best", pct(r.p_best, 1)],
        ["expected_loss", pct(r.expected_loss, 3)],
        ["model_version", m.model_version === undefined || m.model_version === null ? "—" : "v" + m.model_version,
          secs(m.seconds_since_update) + (isNum(m.serving_lag_s) ? " · lag " + m.serving_lag_s.toFixed(1) + " s" : "")],
        ["logloss", num(m.logloss) + " / " + num(m.auc)],
        ["health", m.health || "—"],
      ];
      for (const [field, text, sub] of cells) {
        const td = el("td", { "data-field": field }, text);
        if (sub) td.appendChild(el("span", { class: "sub", "data-field": field + "_detail" }, sub));
        if (field === "ctr") td.dataset.value = isNum(r.ctr) ? String(r.ctr) : "";
        if (field === "health" && m.health === "unhealthy") { td.className = "flag"; td.title = m.health_reason || ""; }
        if (field === "always_valid_p" && r.significant_sequential) td.className = "good";
        tr.appendChild(td);
      }
      if (config.canDecide) {
        const td = el("td", { class: "actions" });
        if (m.holdout_running) {  // the holdout's baseline: only "End the holdout" (on its page) and the model
          td.appendChild(el("a", { href: config.holdoutUrl, "data-action": "holdout" }, "holdout"));
          td.appendChild(actionLink(name, "model", "model"));
          tr.appendChild(td);
          rows.push(tr);
          continue;
        }
        if (stats.experiment.status === "running" && m.status === "active") td.appendChild(actionLink(name, "promote", "promote"));
        if (!m.is_winner) {
          td.appendChild(m.status === "paused" || m.status === "shadow" ? actionLink(name, "resume", "resume") : actionLink(name, "pause", "pause"));
        }
        if (m.status === "shadow") td.appendChild(actionLink(name, "pause", "pause"));
        if (candidate && !r.is_control && stats.experiment.mode !== "interleaved") td.appendChild(actionLink(name, "shadow", "shadow"));
        if (!stats.allocation || stats.allocation.policy === "fixed") td.appendChild(actionLink(name, "reweight", "weight"));
        td.appendChild(actionLink(name, "model", "model"));
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    renderPlanProgress(report);

    const exp = stats.experiment;
    $("exp-status").textContent = exp.status + (exp.winner ? " · winner " + exp.winner : "");
    $("computed-at").textContent = "as of " + new Date(stats.computed_at).toLocaleTimeString();
    $("compute-ms").textContent = isNum(stats.compute_ms) ? stats.compute_ms.toFixed(0) : "—";
    const srm = report.srm;
    const srmEl = $("srm");
    srmEl.textContent = srm.alert ? "MISMATCH (p = " + pval(srm.p_value) + ")" : "ok (p = " + pval(srm.p_value) + ")";
    srmEl.className = srm.alert ? "flag" : "";
    const periods = report.comparison.periods;
    $("periods").textContent = report.comparison.method + ", " + periods + " allocation period" + (periods === 1 ? "" : "s");

    const banners = $("banners");
    const seen = new Set();
    const items = [];
    for (const g of stats.guardrails || []) {
      // A guardrail acted: shown while its pause is in force, or for a day.
      const when = new Date(g.at).toLocaleString();
      items.push(el("li", { class: "flag guardrail", "data-code": "guardrail", "data-action": g.action },
        "Guardrail " + (g.action === "guardrail_pause" ? "paused " : "rolled back ") + (g.arm || "") + " at " + when +
        (g.in_force ? "" : " (no longer in force)") + ": " + g.message));
    }
    for (const w of report.warnings) {
      const key = w.code + ":" + w.message;
      if (seen.has(key)) continue;
      seen.add(key);
      items.push(el("li", { class: w.code === "srm" ? "flag" : "", "data-code": w.code }, (w.arm ? w.arm + ": " : "") + w.message));
    }
    const list = el("ul", { class: "warnings" });
    list.replaceChildren(...items);
    banners.replaceChildren(...(items.length ? [list] : []));
  }

  const POLICY_NAMES = { fixed: "fixed weights", thompson: "Thompson sampling", top_two_thompson: "top-two Thompson" };

  // The allocation policy, its next re-evaluation and the changes of the split (also marked on the traffic chart).
  function renderAllocation(allocation) {
    const box = $("allocation");
    if (!box || !allocation) return;
    const parts = [POLICY_NAMES[allocation.policy] || allocation.policy];
    if (allocation.policy !== "fixed") {
      parts.push("floor " + pct(allocation.floor, 0) + " per arm", "every " + allocation.interval_minutes + " min");
      parts.push(allocation.next_at ? "next re-evaluation " + new Date(allocation.next_at).toLocaleTimeString() : "next re-evaluation when running");
    }
    parts.push("guardrails " + (allocation.guardrails ? "on (α = " + allocation.guardrail_alpha + ")" : "off"));
    $("policy").textContent = parts.join(" · ");
    const list = $("changes");
    const rows = allocation.changes.slice(-8).reverse().map((c) => {
      const weights = Object.entries(c.weights).map(([arm, w]) => arm + " " + num(w, 2)).join(", ");
      return el("li", { "data-epoch": String(c.epoch) },
        "P" + c.epoch + " · " + new Date(c.at).toLocaleTimeString() + " · " + (c.action || "change") + (c.by ? " by " + c.by : "") + " · " + weights);
    });
    list.replaceChildren(...rows);
  }

  function markTraffic(allocation) {
    const gd = chartDiv("traffic");
    if (!allocation || !gd || !gd.layout) return;
    const markers = JSON.stringify(allocation.markers);
    if (markers === drawnMarkers) return;
    drawnMarkers = markers;
    Plotly.relayout(gd, allocation.markers);
  }

  function chartDiv(kind) {
    return $("chart-" + kind);
  }

  function drawFigures(figures) {
    for (const kind of KINDS) {
      const fig = figures[kind];
      if (!fig) continue;
      Plotly.react(chartDiv(kind), fig.data, fig.layout, { responsive: true, displaylogo: false });
    }
  }

  function figureArms() {
    const gd = chartDiv("ctr");
    return gd && gd.layout && gd.layout.meta ? gd.layout.meta.arms : null;
  }

  function applyUpdates(updates, replaceLast, seq) {
    for (const kind of KINDS) {
      const u = updates[kind];
      const gd = chartDiv(kind);
      if (!u || !gd || !gd.data) continue;
      if (replaceLast) {
        // The server overwrote its newest history row: overwrite our newest point too.
        u.traces.forEach((traceIndex, i) => {
          for (const key of Object.keys(u.data)) {
            const series = gd.data[traceIndex][key];
            const values = u.data[key][i];
            series.splice(series.length - values.length, values.length, ...values);
          }
        });
        gd.layout.datarevision = seq;
        Plotly.react(gd, gd.data, gd.layout);
      } else {
        Plotly.extendTraces(gd, u.data, u.traces, HISTORY_POINTS);
      }
    }
  }

  function onSnapshot(msg) {
    debug.snapshots += 1;
    state = msg;
    historyLength = msg.history.length;
    drawFigures(msg.figures);
    drawnMarkers = msg.stats && msg.stats.allocation ? JSON.stringify(msg.stats.allocation.markers) : null;
    if (msg.stats) {
      renderTable(msg.stats);
      renderAllocation(msg.stats.allocation);
      debug.lastSeq = msg.stats.seq;
    }
  }

  function onStats(msg) {
    const current = state && state.stats;
    if (current && msg.stats.seq <= current.seq) return; // already in the snapshot
    const arms = figureArms();
    if (!arms || JSON.stringify(arms) !== JSON.stringify(msg.stats.report.arm_order)) {
      socket.close(4000, "arms changed"); // a fresh snapshot redraws every figure
      return;
    }
    const replace = msg.replaces_last && historyLength > 0;
    if (!replace) historyLength = Math.min(historyLength + 1, HISTORY_POINTS);
    applyUpdates(msg.figure_updates, replace, msg.stats.seq);
    markTraffic(msg.stats.allocation);
    state.stats = msg.stats;
    debug.lastSeq = msg.stats.seq;
    renderTable(msg.stats);
    renderAllocation(msg.stats.allocation);
  }

  // The planning calculator's progress bar follows the live impressions of the least advanced competing arm.
  function renderPlanProgress(report) {
    const bar = $("plan-progress");
    if (!bar) return;
    const target = Number(bar.dataset.target);
    const shares = report.arm_order.filter((n) => report.arms[n].weight > 0).map((n) => report.arms[n].impressions / target);
    if (!target || !shares.length) return;
    const progress = Math.min(1, Math.min(...shares));
    bar.value = progress;
    $("plan-progress-text").textContent = pct(progress, 1);
  }

  function onDecision(msg) {
    const d = msg.decision;
    const banner = el("p", { class: "notice", "data-testid": "decision-notice" },
      "Decision #" + d.id + ": " + d.action + (d.arm ? " " + d.arm : "") + " by " + d.user);
    $("banners").prepend(banner);
  }

  // Candidates: "Evaluate offline" calls the JSON twin; the job's progress arrives over this page's WebSocket.
  function csrfToken() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function candidateRow(arm) {
    for (const tr of document.querySelectorAll("#candidates tr[data-candidate]")) if (tr.dataset.candidate === arm) return tr;
    return null;
  }

  function showProgress(arm, fraction, stage, state) {
    const tr = candidateRow(arm);
    if (!tr) return;
    const box = tr.querySelector(".progress");
    if (!box) return;
    box.hidden = false;
    box.dataset.state = state;
    box.querySelector("progress").value = fraction;
    box.querySelector(".stage").textContent = stage;
  }

  async function refreshCandidates() {
    const response = await fetch(config.candidatesUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.querySelector("#candidates");
    if (fresh) { $("candidates").replaceWith(fresh); bindCandidates(); }
  }

  function bindCandidates() {
    for (const form of document.querySelectorAll("#candidates form.evaluate")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const arm = form.dataset.arm;
        const button = form.querySelector("button");
        button.disabled = true;
        showProgress(arm, 0, "queueing…", "queued");
        const url = config.evaluateUrl.replace("ARM", encodeURIComponent(arm));
        const response = await fetch(url, {
          method: "POST", credentials: "same-origin", body: "{}",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          showProgress(arm, 0, (body.error && body.error.message) || "refused (" + response.status + ")", "failed");
          button.disabled = false;
        }
      });
    }
  }

  function onOfflineProgress(msg) {
    const stage = msg.state === "running" ? msg.stage + " (" + Math.round(msg.fraction * 100) + "%)" : msg.stage;
    showProgress(msg.arm, msg.fraction, stage, msg.state);
    if (msg.state === "done") refreshCandidates();
    if (msg.state === "failed") { const tr = candidateRow(msg.arm); if (tr) tr.querySelector("button").disabled = false; }
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + config.wsPath);
    setStatus("connecting", "connecting…");
    socket.onopen = () => {
      attempt = 0;
      setStatus("live", "live");
    };
    socket.onmessage = (event) => {
      debug.messages += 1;
      const msg = JSON.parse(event.data);
      if (msg.type === "snapshot") onSnapshot(msg);
      else if (msg.type === "stats") onStats(msg);
      else if (msg.type === "decision") onDecision(msg);
      else if (msg.type === "offline_progress") onOfflineProgress(msg);
    };
    socket.onclose = (event) => {
      if (event.code === 4401) {
        window.location.assign("/accounts/login/?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** attempt) * (0.8 + 0.4 * Math.random());
      attempt += 1;
      debug.reconnects += 1;
      setStatus("reconnecting", "reconnecting in " + (delay / 1000).toFixed(1) + " s");
      window.setTimeout(connect, delay);
    };
  }

  if ($("candidates")) bindCandidates();
  connect();
})();
