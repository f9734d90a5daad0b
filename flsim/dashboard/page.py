"""The dashboard's single page and its script, kept as Python strings.

They live in a module rather than as package data files so that an installed wheel always
has them, whatever the packaging configuration. The page has no inline script (the server's
Content-Security-Policy forbids it): settings travel as ``data-`` attributes on ``<body>``.
"""

from __future__ import annotations

import html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222}
header{padding:0.6em 1.2em;background:#f6f7f9;border-bottom:1px solid #ddd}
h1{font-size:1.25em;margin:0 0 0.4em 0}
.controls{display:flex;flex-wrap:wrap;gap:0.6em 1.2em;align-items:center;font-size:0.9em}
.controls label{display:flex;gap:0.35em;align-items:center}
main{padding:0.6em 1.2em}
#plot{width:100%;height:520px}
#status{color:#666;font-size:0.85em}
table{border-collapse:collapse;font-size:0.85em;margin-top:0.6em}
th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
td.l,th.l{text-align:left}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:0.85em;color:#fff}
.s-running{background:#1f77b4}.s-completed{background:#2ca02c}.s-failed{background:#d62728}
.s-diverged{background:#ff7f0e}
#warnings p{margin:0.3em 0;background:#fff4e5;border-left:4px solid #ff7f0e;padding:0.2em 0.6em}
.s-unknown{background:#7f7f7f}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
#diff td,#diff th{text-align:left;white-space:normal;max-width:24em}
#smooth{width:4em}
"""


def index_html(title: str, poll_ms: int) -> str:
    """The dashboard page; ``poll_ms`` is the default refresh period (``?interval=`` overrides)."""
    t = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{t}</title>
<style>{_CSS}</style>
<script src="/assets/plotly.min.js"></script>
<script src="/assets/dashboard.js" defer></script>
<script src="/assets/studies.js" defer></script>
</head>
<body data-poll-ms="{int(poll_ms)}">
<header>
  <h1>{t}</h1>
  <div class="controls">
    <label>x axis <select id="x-axis">
      <option value="round">round</option>
      <option value="virtual_time">virtual time</option>
      <option value="bytes_total">total bytes</option>
      <option value="grad_evals">gradient evaluations</option>
      <option value="communications">communications</option>
      <option value="wall_time">wall time</option>
    </select></label>
    <label>metric <select id="metric"></select></label>
    <label><input type="checkbox" id="log-y"> log y</label>
    <label>group by <select id="group-by">
      <option value="config_hash">configuration (seeds pooled)</option>
      <option value="">none: every run</option>
    </select></label>
    <label>smoothing <input type="number" id="smooth" min="0" max="200" step="1" value="0"></label>
    <label>scenario <select id="f-scenario"><option value="">all</option></select></label>
    <label>algorithm <select id="f-algorithm"><option value="">all</option></select></label>
    <label>status <select id="f-status"><option value="">all</option></select></label>
    <label><input type="checkbox" id="pause"> pause</label>
    <span id="status">connecting…</span>
  </div>
</header>
<main>
  <div id="warnings"></div>
  <div id="plot"></div>
  <table id="runs"><thead><tr>
    <th title="select runs to compare their configs">diff</th>
    <th class="l">status</th><th class="l">scenario</th><th class="l">algorithm</th><th>seed</th>
    <th class="l">run</th><th>rows</th><th>round</th><th id="metric-head">metric</th><th class="l">files</th>
  </tr></thead><tbody></tbody></table>
  <section id="diff"></section>
  <section id="studies"></section>
</main>
</body></html>
"""


# Polls /api/runs, fetches only the rows each run appended since the last poll and appends
# them to the existing traces with Plotly.extendTraces (no page reload, zoom kept).
# window.flsimDashboard exposes the state for tests and for debugging in the console.
DASHBOARD_JS = r"""
(function () {
  'use strict';
  var PALETTE = ['#636efa', '#EF553B', '#00cc96', '#ab63fa', '#FFA15A', '#19d3f3', '#FF6692',
                 '#B6E880', '#FF97FF', '#FECB52', '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
  var X_NAMES = ['round', 'virtual_time', 'bytes_total', 'grad_evals', 'communications', 'wall_time',
                 'events', 'bytes_up', 'bytes_down'];
  var PREFERRED = ['test_acc', 'test_loss', 'optimality_gap', 'consensus_distance', 'train_loss'];
  var LOG_DEFAULT = ['optimality_gap', 'dist_to_opt', 'consensus_distance', 'mean_sq_dist_to_opt'];
  var params = new URLSearchParams(window.location.search);
  var pollMs = Number(params.get('interval')) || Number(document.body.dataset.pollMs) || 2000;
  pollMs = Math.max(200, pollMs);

  var state = {
    runs: {}, order: [], plotted: [], polls: 0, errors: [], lastUpdate: null, appended: 0,
    x: params.get('x') || 'round', metric: params.get('metric') || null, logY: null,
    filters: {scenario: '', algorithm: '', status: ''}, paused: false, metrics: [],
    // ?group=none draws every run; ?group=KEY groups by a config key; default: seeds pooled.
    groupBy: params.get('group') === null ? 'config_hash' : params.get('group').replace(/^none$/, ''),
    smooth: Math.max(0, Math.floor(Number(params.get('smooth')) || 0)), selected: {}, colorOf: {},
    groups: []
  };
  // Keys that never tell configurations apart in a group name or a config diff.
  var NOT_CONFIG = ['seed', 'name', 'tags', 'notes'];
  window.flsimDashboard = state;
  var plot = document.getElementById('plot');
  var $ = function (id) { return document.getElementById(id); };

  function api(path) {
    return fetch(path, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) { throw new Error(path + ': HTTP ' + r.status); }
      return r.json();
    });
  }

  function num(v) {
    if (v === null || v === undefined) { return null; }
    if (v === 'inf') { return Infinity; }
    if (v === '-inf') { return -Infinity; }
    return typeof v === 'number' ? v : null;
  }

  function visible(run) {
    var f = state.filters, m = run.meta;
    return (!f.scenario || m.scenario === f.scenario) && (!f.algorithm || m.algorithm === f.algorithm) &&
           (!f.status || m.status === f.status);
  }

  function label(m) { return m.algorithm + ' seed=' + m.seed + ' (' + m.run_id + ')'; }

  // Distinct colours however many groups: the palette, then golden-angle hues (no repeats).
  function colour(i) {
    return i < PALETTE.length ? PALETTE[i] : 'hsl(' + Math.round((i * 137.508) % 360) + ',62%,45%)';
  }

  function rgba(c, alpha) {
    if (c.charAt(0) !== '#') { return c.replace('hsl(', 'hsla(').replace(')', ',' + alpha + ')'); }
    var n = parseInt(c.slice(1), 16);
    return 'rgba(' + (n >> 16) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + alpha + ')';
  }

  // Config keys whose values differ across the given runs' metadata.
  function diffKeys(metas, skip) {
    var keys = {};
    metas.forEach(function (m) { Object.keys(m.config || {}).forEach(function (k) { keys[k] = true; }); });
    return Object.keys(keys).sort().filter(function (k) {
      if ((skip || []).indexOf(k) >= 0) { return false; }
      var first = String((metas[0].config || {})[k]);
      return metas.some(function (m) { return String((m.config || {})[k]) !== first; });
    });
  }

  function groupKey(run) {
    var m = run.meta;
    if (!state.groupBy) { return m.id; }
    if (state.groupBy === 'config_hash') { return 'h:' + m.config_hash; }
    var v = (m.config || {})[state.groupBy];
    return state.groupBy + '=' + (v === undefined || v === null ? '-' : String(v));
  }

  // Trailing moving average over `smooth` points (0 or 1: the raw values).
  function smoothed(ys) {
    var w = state.smooth;
    if (w <= 1) { return ys; }
    var out = [], sum = 0;
    for (var i = 0; i < ys.length; i++) {
      sum += ys[i]; if (i >= w) { sum -= ys[i - w]; }
      out.push(sum / Math.min(i + 1, w));
    }
    return out;
  }

  // The visible runs with the metric, grouped; named like the report's groups, one colour each.
  function buildGroups() {
    var byKey = {}, keys = [];
    state.order.forEach(function (id) {
      var run = state.runs[id];
      if (!wanted(run)) { return; }
      var k = groupKey(run);
      if (!byKey[k]) { byKey[k] = []; keys.push(k); }
      byKey[k].push(run);
    });
    if (state.groupBy) { keys.sort(); }
    var reps = keys.map(function (k) { return byKey[k][0].meta; });
    var apart = state.groupBy === 'config_hash' ? diffKeys(reps, NOT_CONFIG.concat(['algorithm.name'])) : [];
    return keys.map(function (k, i) {
      var m = byKey[k][0].meta, name = k;
      if (!state.groupBy) { name = label(m); }
      if (state.groupBy === 'config_hash') {
        name = m.scenario + ' / ' + m.algorithm;
        var parts = apart.map(function (key) { return key + '=' + (m.config || {})[key]; });
        if (parts.length) { name += ' ' + parts.slice(0, 3).join(', ') + (parts.length > 3 ? ', ...' : ''); }
      }
      return {key: k, name: name, runs: byKey[k], color: colour(i)};
    });
  }

  function quantile(sorted, q) {
    var h = (sorted.length - 1) * q, lo = Math.floor(h), hi = Math.ceil(h);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (h - lo);
  }

  // Median and 25th-75th percentiles at the x values every run of the group reports.
  function aggregate(runs) {
    var at = {}, n = runs.length;
    runs.forEach(function (run) {
      var p = points(run, 0), ys = smoothed(p.y);
      p.x.forEach(function (x, i) { (at[x] = at[x] || []).push(ys[i]); });
    });
    var xs = Object.keys(at).map(Number).filter(function (x) { return at[x].length === n; });
    xs.sort(function (a, b) { return a - b; });
    var out = {x: xs, mid: [], lo: [], hi: []};
    xs.forEach(function (x) {
      var v = at[x].slice().sort(function (a, b) { return a - b; });
      out.mid.push(quantile(v, 0.5)); out.lo.push(quantile(v, 0.25)); out.hi.push(quantile(v, 0.75));
    });
    return out;
  }

  function groupTraces(g) {
    var a = aggregate(g.runs), name = g.name + ' (n=' + g.runs.length + ')', traces = [];
    if (g.runs.length > 1) {
      traces.push({type: 'scatter', mode: 'lines', x: a.x.concat(a.x.slice().reverse()),
                   y: a.hi.concat(a.lo.slice().reverse()), fill: 'toself', fillcolor: rgba(g.color, 0.2),
                   line: {width: 0}, hoverinfo: 'skip', showlegend: false, legendgroup: g.key,
                   name: name, meta: {group: g.key, role: 'band'}});
    }
    traces.push({type: 'scatter', mode: 'lines', x: a.x, y: a.mid, name: name, legendgroup: g.key,
                 line: {color: g.color, width: 2}, meta: {group: g.key, role: 'center'},
                 hovertemplate: state.x + '=%{x:.4g}<br>median=%{y:.4g}<extra>' + name + '</extra>'});
    return traces;
  }

  function points(run, from) {
    var xs = run.cols[state.x] || [], ys = run.cols[state.metric] || [], out = {x: [], y: []};
    for (var i = from; i < run.n; i++) {
      var x = num(xs[i]), y = num(ys[i]);
      if (x !== null && y !== null && isFinite(x) && isFinite(y)) { out.x.push(x); out.y.push(y); }
    }
    return out;
  }

  function trace(run) {
    var p = points(run, 0);
    return {type: 'scatter', mode: 'lines+markers', x: p.x, y: smoothed(p.y), name: label(run.meta),
            meta: {run: run.meta.id}, marker: {size: 4}, line: {color: run.color, width: 2},
            hovertemplate: state.x + '=%{x:.4g}<br>' + state.metric + '=%{y:.4g}<extra>' +
                           label(run.meta) + '</extra>'};
  }

  function logY() { return state.logY !== null ? state.logY : LOG_DEFAULT.indexOf(state.metric) >= 0; }

  function layout() {
    return {
      title: {text: (state.metric || 'no metric yet') + ' vs ' + state.x},
      xaxis: {title: {text: state.x}, gridcolor: '#ebebeb', zeroline: false},
      yaxis: {title: {text: state.metric || ''}, type: logY() ? 'log' : 'linear', gridcolor: '#ebebeb',
              zeroline: false},
      plot_bgcolor: '#fff', margin: {t: 48, r: 16}, legend: {orientation: 'v'},
      uirevision: state.x + '|' + state.metric, hovermode: 'closest'
    };
  }

  function wanted(run) { return visible(run) && state.metric && (run.cols[state.metric] || []).length > 0; }

  // Grouped or smoothed curves depend on every run, so they are redrawn, never extended.
  function incremental() { return !state.groupBy && state.smooth <= 1; }

  function rebuild() {
    state.plotted = [];
    state.colorOf = {};
    var traces = [];
    state.groups = buildGroups();
    state.groups.forEach(function (g) {
      g.runs.forEach(function (run) { state.colorOf[run.meta.id] = g.color; });
      if (!state.groupBy) {
        g.runs[0].color = g.color; traces.push(trace(g.runs[0])); state.plotted.push(g.runs[0].meta.id);
      } else {
        traces = traces.concat(groupTraces(g));
      }
    });
    Plotly.react(plot, traces, layout(), {responsive: true, displaylogo: false});
  }

  function extend(run, from) {
    var i = state.plotted.indexOf(run.meta.id);
    if (i < 0) {
      if (wanted(run)) { Plotly.addTraces(plot, trace(run)); state.plotted.push(run.meta.id); }
      return;
    }
    var p = points(run, from);
    if (p.x.length) { Plotly.extendTraces(plot, {x: [p.x], y: [p.y]}, [i]); state.appended += p.x.length; }
  }

  function setOptions(select, values, keepFirst) {
    var current = select.value, first = keepFirst ? select.options[0].outerHTML : '';
    var html = first + values.map(function (v) {
      var e = document.createElement('option'); e.value = v; e.textContent = v; return e.outerHTML;
    }).join('');
    if (select.dataset.sig !== html) {
      select.innerHTML = html; select.dataset.sig = html;
      if (values.indexOf(current) >= 0 || (keepFirst && current === '')) { select.value = current; }
    }
  }

  function uniq(key) {
    var seen = {};
    state.order.forEach(function (id) { seen[state.runs[id].meta[key]] = true; });
    return Object.keys(seen).sort();
  }

  function fmt(v) {
    var x = num(v);
    if (x === null) { return ''; }
    if (!isFinite(x)) { return String(x); }
    var tiny = x !== 0 && Math.abs(x) < 1e-3;
    return Math.abs(x) >= 1e5 || tiny ? x.toExponential(3) : String(+x.toPrecision(4));
  }

  function cell(text, cls) {
    var td = document.createElement('td'); td.textContent = text; if (cls) { td.className = cls; } return td;
  }

  function renderTable() {
    var body = $('runs').tBodies[0], frag = document.createDocumentFragment();
    $('metric-head').textContent = state.metric || 'metric';
    state.order.forEach(function (id) {
      var run = state.runs[id], m = run.meta;
      if (!visible(run)) { return; }
      var tr = document.createElement('tr'); tr.dataset.run = id;
      var pick = document.createElement('input'); pick.type = 'checkbox'; pick.className = 'pick';
      pick.checked = !!state.selected[id]; pick.dataset.run = id;
      var pc = document.createElement('td'); pc.appendChild(pick); tr.appendChild(pc);
      var st = document.createElement('td'); st.className = 'l';
      var badge = document.createElement('span'); badge.className = 'badge s-' +
        (['running', 'completed', 'failed', 'diverged'].indexOf(m.status) >= 0 ? m.status : 'unknown');
      badge.textContent = m.status; st.appendChild(badge); tr.appendChild(st);
      tr.appendChild(cell(m.scenario, 'l'));
      var alg = cell('', 'l'), sw = document.createElement('span');
      sw.className = 'swatch'; sw.style.background = state.colorOf[id] || run.color; alg.appendChild(sw);
      alg.appendChild(document.createTextNode(m.algorithm)); tr.appendChild(alg);
      tr.appendChild(cell(m.seed === null ? '' : String(m.seed)));
      tr.appendChild(cell(m.run_id + (m.tags ? ' [' + m.tags + ']' : ''), 'l'));  // tags: scenario labels
      tr.appendChild(cell(String(m.rows)));
      tr.appendChild(cell(fmt(m.last && m.last.round)));
      tr.appendChild(cell(fmt(m.last && state.metric ? m.last[state.metric] : null)));
      var files = cell('', 'l');
      (m.files || []).forEach(function (name) {
        if (name.slice(-8) === '.parquet') { return; }
        var a = document.createElement('a');
        var dir = m.path.split('/').map(encodeURIComponent).join('/');
        a.href = '/files/' + dir + '/' + encodeURIComponent(name);
        a.textContent = name; a.target = '_blank'; a.rel = 'noopener';
        files.appendChild(a); files.appendChild(document.createTextNode(' '));
      });
      tr.appendChild(files);
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    renderDiff();
  }

  // The config keys that differ across the selected runs, one column per run.
  function renderDiff() {
    var box = $('diff'), ids = state.order.filter(function (id) { return state.selected[id]; });
    if (ids.length < 2) {
      box.textContent = ids.length ? 'Select another run to compare configs.' : '';
      return;
    }
    var metas = ids.map(function (id) { return state.runs[id].meta; });
    var keys = diffKeys(metas, []), table = document.createElement('table');
    var head = document.createElement('tr');
    table.id = 'diff-table';
    head.appendChild(cell('config key', 'l'));
    metas.forEach(function (m) { head.appendChild(cell(m.run_id, 'l')); });
    table.appendChild(head);
    keys.forEach(function (k) {
      var tr = document.createElement('tr'); tr.appendChild(cell(k, 'l'));
      metas.forEach(function (m) {
        var v = (m.config || {})[k]; tr.appendChild(cell(v === undefined ? '(unset)' : String(v), 'l'));
      });
      table.appendChild(tr);
    });
    var title = document.createElement('h3');
    title.textContent = keys.length ? 'Config differences of the selected runs'
                                    : 'The selected runs have equal configs';
    box.replaceChildren(title, table);
  }

  // Group-by choices: configuration, none, then every config key that varies across runs.
  function refreshGroupBy() {
    var metas = state.order.map(function (id) { return state.runs[id].meta; });
    var keys = metas.length > 1 ? diffKeys(metas, ['name']) : [];
    var sel = $('group-by'), html = '<option value="config_hash">configuration (seeds pooled)</option>' +
      '<option value="">none: every run</option>' + keys.map(function (k) {
        var e = document.createElement('option'); e.value = k; e.textContent = k; return e.outerHTML;
      }).join('');
    if (sel.dataset.sig !== html) { sel.innerHTML = html; sel.dataset.sig = html; }
    sel.value = state.groupBy;
  }

  // Damaged runs the server skipped: one line each, as text (never markup).
  function renderWarnings(lines) {
    var box = $('warnings'), frag = document.createDocumentFragment();
    lines.forEach(function (line) {
      var p = document.createElement('p'); p.textContent = line; frag.appendChild(p);
    });
    box.replaceChildren(frag);
  }

  function refreshControls() {
    setOptions($('f-scenario'), uniq('scenario'), true);
    setOptions($('f-algorithm'), uniq('algorithm'), true);
    setOptions($('f-status'), uniq('status'), true);
    refreshGroupBy();
    var metrics = {};
    state.order.forEach(function (id) {
      (state.runs[id].meta.metrics || []).forEach(function (k) {
        if (X_NAMES.indexOf(k) < 0) { metrics[k] = true; }
      });
    });
    state.metrics = Object.keys(metrics).sort();
    if (!state.metric || state.metrics.indexOf(state.metric) < 0) {
      var pick = PREFERRED.filter(function (k) { return metrics[k]; })[0] || state.metrics[0] || null;
      if (pick !== state.metric) { state.metric = pick; return true; }
    }
    setOptions($('metric'), state.metrics, false);
    if (state.metric) { $('metric').value = state.metric; }
    return false;
  }

  // Appends a metrics response to the run's columns; returns the first new row index, or
  // 'rebuild' when the run's log restarted (its trace must be replaced, not extended).
  function merge(run, data) {
    var reset = data.reset || data.generation !== run.generation;
    if (reset) { run.cols = {}; run.n = 0; run.generation = data.generation; }
    var from = run.n, len = data.next - data.since;
    Object.keys(data.columns).forEach(function (k) {
      var col = run.cols[k];
      if (!col) { col = run.cols[k] = new Array(from).fill(null); }
      Array.prototype.push.apply(col, data.columns[k]);
    });
    Object.keys(run.cols).forEach(function (k) {
      if (!(k in data.columns)) { Array.prototype.push.apply(run.cols[k], new Array(len).fill(null)); }
    });
    run.n = data.next;
    return reset && state.plotted.indexOf(run.meta.id) >= 0 ? 'rebuild' : from;
  }

  function poll() {
    if (state.paused) { return Promise.resolve(); }
    return api('/api/runs').then(function (data) {
      var seen = {}, needRebuild = false;
      renderWarnings(data.warnings || []);
      data.runs.forEach(function (m) {
        seen[m.id] = true;
        var run = state.runs[m.id];
        if (!run) {
          run = state.runs[m.id] = {meta: m, cols: {}, n: 0, generation: m.generation,
                                    color: colour(state.order.length)};
          state.order.push(m.id);
        }
        run.meta = m;
      });
      state.order = state.order.filter(function (id) {
        if (seen[id]) { return true; }
        delete state.runs[id]; needRebuild = true; return false;
      });
      if (refreshControls()) { needRebuild = true; refreshControls(); }
      var stale = state.order.filter(function (id) {
        var r = state.runs[id]; return r.meta.rows !== r.n || r.meta.generation !== r.generation;
      });
      return Promise.all(stale.map(function (id) {
        var run = state.runs[id];
        var since = run.meta.generation !== run.generation ? 0 : run.n;
        return api('/api/runs/' + id + '/metrics?since=' + since).then(function (d) { return [run, d]; });
      })).then(function (results) {
        var updates = [];
        results.forEach(function (pair) {
          var how = merge(pair[0], pair[1]);
          if (how === 'rebuild') { needRebuild = true; } else { updates.push([pair[0], how]); }
        });
        refreshControls();
        var fresh = updates.some(function (u) {
          return state.plotted.indexOf(u[0].meta.id) < 0 && wanted(u[0]);
        });
        if (needRebuild || !plot.data || !incremental() || fresh) {
          rebuild();
        } else {
          updates.forEach(function (u) { extend(u[0], u[1]); });
        }
        renderTable();
        state.polls += 1; state.lastUpdate = Date.now();
        var running = state.order.filter(function (id) {
          return state.runs[id].meta.status === 'running';
        }).length;
        $('status').textContent = state.order.length + ' runs (' + running + ' running) · updated ' +
          new Date(state.lastUpdate).toLocaleTimeString();
      });
    }).catch(function (err) {
      state.errors.push(String(err));
      $('status').textContent = 'update failed: ' + err.message + ' (retrying)';
    });
  }

  function loop() { poll().then(function () { window.setTimeout(loop, pollMs); }); }

  function bind() {
    $('x-axis').value = state.x;
    $('x-axis').addEventListener('change', function (e) { state.x = e.target.value; rebuild(); });
    $('metric').addEventListener('change', function (e) {
      state.metric = e.target.value; state.logY = null; $('log-y').checked = logY(); rebuild(); renderTable();
    });
    $('log-y').addEventListener('change', function (e) { state.logY = e.target.checked; rebuild(); });
    ['scenario', 'algorithm', 'status'].forEach(function (k) {
      $('f-' + k).addEventListener('change', function (e) {
        state.filters[k] = e.target.value; rebuild(); renderTable();
      });
    });
    $('pause').addEventListener('change', function (e) { state.paused = e.target.checked; });
    $('group-by').addEventListener('change', function (e) {
      state.groupBy = e.target.value; rebuild(); renderTable();
    });
    $('smooth').value = String(state.smooth);
    $('smooth').addEventListener('change', function (e) {
      state.smooth = Math.max(0, Math.floor(Number(e.target.value) || 0)); rebuild();
    });
    $('runs').addEventListener('change', function (e) {
      if (!e.target.classList.contains('pick')) { return; }
      state.selected[e.target.dataset.run] = e.target.checked; renderDiff();
    });
  }

  bind();
  loop();
})();
"""
