"""The dashboard's study panel: ``/api/runs/{id}/study`` and the script that draws it.

For a study run the API serves its verdict, its criteria (value, op, threshold, verdict, gate),
its figure specs and the figures built from its rows by :func:`flsim.report.study.study_payload`
(the same figures as the HTML report). ``/assets/studies.js`` polls ``/api/runs``, and for each
study run whose rows or status changed fetches that payload and redraws the run's panel below
the runs table. It is a separate script so that the main dashboard script stays unaware of it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flsim.report.figures import _nan_to_none
from flsim.report.study import is_study_run, study_payload

_ID = "{run_id:[0-9a-f]{12}}"


def add_study_routes(app: web.Application, store_key: Any) -> None:
    """Register the study API and script on the dashboard application."""

    async def study(request: web.Request) -> web.Response:
        run = request.app[store_key].get(request.match_info["run_id"])
        if run is None or not is_study_run(run.summary):
            raise web.HTTPNotFound(text="no such study run\n")
        return web.json_response(_nan_to_none(study_payload(run.summary, run.rows)))

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=STUDIES_JS, content_type="application/javascript")

    app.router.add_get(f"/api/runs/{_ID}/study", study)
    app.router.add_get("/assets/studies.js", script)


# Polls /api/runs; for study runs (``study`` set) whose rows, status or generation changed,
# fetches /api/runs/<id>/study and redraws that run's criteria table and figures. Text goes
# in with textContent only. window.flsimStudies exposes the state for tests.
STUDIES_JS = r"""
(function () {
  'use strict';
  var pollMs = Math.max(200, Number(document.body.dataset.pollMs) || 2000);
  var state = {seen: {}, panels: 0, errors: []};
  window.flsimStudies = state;
  var root = document.getElementById('studies');
  if (!root) { return; }

  function api(path) {
    return fetch(path, {cache: 'no-store'}).then(function (r) {
      if (!r.ok) { throw new Error(path + ': HTTP ' + r.status); }
      return r.json();
    });
  }
  function el(tag, text) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function fmt(v) {
    if (Array.isArray(v)) { return '[' + v.map(fmt).join(', ') + ']'; }
    return typeof v === 'number' ? String(+v.toPrecision(4)) : String(v);
  }
  var COLOURS = {pass: '#2ca02c', holds: '#2ca02c', FAIL: '#d62728', 'not met': '#b8860b'};

  function panel(run, body) {
    var box = document.querySelector('[data-study-run="' + run.id + '"]');
    if (!box) { box = el('div'); box.dataset.studyRun = run.id; root.appendChild(box); state.panels += 1; }
    var title = el('h3', body.study + ' · ' + run.scenario + ' seed ' + run.seed + ' · ' +
                   (body.pass ? 'PASS' : (run.status === 'running' ? 'running' : 'FAIL')));
    var table = el('table'), head = el('tr');
    ['criterion', 'value', 'op', 'threshold', 'verdict', 'gate'].forEach(function (h) {
      head.appendChild(el('th', h));
    });
    table.appendChild(head);
    body.criteria.forEach(function (c) {
      var tr = el('tr');
      [c.criterion, fmt(c.value), c.op, fmt(c.threshold), c.verdict, c.gate].forEach(function (v, i) {
        var td = el('td', v); if (i === 4) { td.style.color = COLOURS[c.verdict] || ''; } tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    var figures = el('div');
    box.replaceChildren(title, table, figures);
    body.plots.forEach(function (fig, j) {
      var div = el('div'); div.className = 'study-plot'; div.style.height = '420px';
      div.dataset.figure = body.figures[j].title; figures.appendChild(div);
      Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
    });
  }

  function poll() {
    return api('/api/runs').then(function (data) {
      var work = data.runs.filter(function (run) {
        var key = run.rows + '|' + run.status + '|' + run.generation;
        if (!run.study || state.seen[run.id] === key) { return false; }
        state.seen[run.id] = key; return true;
      });
      return Promise.all(work.map(function (run) {
        return api('/api/runs/' + run.id + '/study').then(function (body) { panel(run, body); });
      }));
    }).catch(function (err) { state.errors.push(String(err)); });
  }
  function loop() { poll().then(function () { window.setTimeout(loop, pollMs); }); }
  loop();
})();
"""
