// epserve live view: one EventSource, plain DOM and canvas, no libraries.
(function () {
  'use strict';
  const WORKER_COLORS = ['#4fc3f7', '#ffb74d', '#81c784', '#e57373', '#ba68c8', '#4db6ac', '#f06292', '#aed581'];
  const state = { hello: null, history: [], last: null, mode: 'recent' };
  const $ = (id) => document.getElementById(id);

  function fmt(n) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    const a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(1) + 'G';
    if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
    if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
    if (a >= 100 || Number.isInteger(n)) return String(Math.round(n));
    return n.toFixed(1);
  }
  function ms(s) { return s === null || s === undefined ? '–' : fmt(s * 1000) + ' ms'; }

  function setStatus(kind, text) {
    const el = $('status');
    el.className = 'status ' + kind;
    el.dataset.state = kind;
    el.textContent = text;
  }

  // ------------------------------------------------------------------ heatmap

  function buildHeatmap(h) {
    const table = $('heatmap');
    const thead = table.tHead;
    const tbody = table.tBodies[0];
    thead.innerHTML = '';
    tbody.innerHTML = '';
    const band = document.createElement('tr');
    const head = document.createElement('tr');
    band.appendChild(document.createElement('th'));
    const corner = document.createElement('th');
    corner.textContent = 'layer \\ expert';
    head.appendChild(corner);
    for (let e = 0; e < h.experts; e++) {
      const b = document.createElement('th');
      b.className = 'worker-band';
      const w = h.owner.length ? h.owner[0][e] : 0;
      b.style.background = WORKER_COLORS[w % WORKER_COLORS.length];
      b.title = 'expert ' + e + ' on ' + h.workers[w];
      band.appendChild(b);
      const th = document.createElement('th');
      th.textContent = e;
      head.appendChild(th);
    }
    thead.appendChild(band);
    thead.appendChild(head);
    h.layers.forEach((layer, row) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.textContent = layer;
      tr.appendChild(th);
      for (let e = 0; e < h.experts; e++) {
        const td = document.createElement('td');
        td.className = 'cell';
        td.dataset.layer = layer;
        td.dataset.expert = e;
        td.dataset.worker = h.workers[h.owner[row][e]];
        td.dataset.total = '0';
        td.dataset.recent = '0';
        td.dataset.value = '0';
        td.textContent = '0';
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    });
  }

  function updateHeatmap(msg) {
    const total = msg.routed_total, recent = msg.routed_recent;
    const data = state.mode === 'total' ? total : recent;
    let max = 0;
    data.forEach((row) => row.forEach((v) => { if (v > max) max = v; }));
    const rows = $('heatmap').tBodies[0].rows;
    for (let r = 0; r < rows.length && r < data.length; r++) {
      const cells = rows[r].cells;
      for (let e = 0; e < data[r].length; e++) {
        const td = cells[e + 1];
        const v = data[r][e];
        td.dataset.total = total[r][e];
        td.dataset.recent = recent[r][e];
        td.dataset.value = v;
        td.textContent = fmt(v);
        const f = max > 0 ? v / max : 0;
        // dark blue (cold) to amber (hot)
        const hue = 220 - 180 * f;
        td.style.background = v === 0 ? '#1e252e' : 'hsl(' + hue + ',70%,' + (22 + 28 * f) + '%)';
        td.title = 'layer ' + rows[r].cells[0].textContent + ', expert ' + e + ' (' + td.dataset.worker + '): '
          + total[r][e] + ' tokens since start, ' + recent[r][e] + ' in the last ' + state.hello.window_seconds + ' s';
      }
    }
  }

  function updateWorkers(msg) {
    const h = state.hello;
    const loads = state.mode === 'total' ? msg.worker_total : msg.worker_recent;
    const sum = loads.reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...loads);
    const box = $('workers');
    if (box.children.length !== h.workers.length + 1) {
      box.innerHTML = '';
      h.workers.forEach((name, w) => {
        const div = document.createElement('div');
        div.className = 'worker';
        div.dataset.worker = name;
        div.innerHTML = '<div class="name"></div><div class="bar"><div></div></div><div class="num"></div>';
        div.children[0].textContent = name;
        div.children[1].firstChild.style.background = WORKER_COLORS[w % WORKER_COLORS.length];
        box.appendChild(div);
      });
      const imb = document.createElement('div');
      imb.className = 'imbalance';
      imb.id = 'imbalance';
      box.appendChild(imb);
    }
    h.workers.forEach((name, w) => {
      const div = box.children[w];
      div.dataset.tokens = loads[w];
      div.children[1].firstChild.style.width = (100 * loads[w] / max) + '%';
      div.children[2].textContent = fmt(loads[w]) + ' tokens · ' + (sum ? (100 * loads[w] / sum).toFixed(1) : '0.0') + '%';
    });
    let text = 'load imbalance (max/mean over workers, last ' + h.window_seconds + ' s) per layer: '
      + h.layers.map((l, i) => 'L' + l + ' ' + (msg.imbalance[i] ? msg.imbalance[i].toFixed(2) : '–')).join(' · ');
    if (msg.placement) {
      // the live placement: its epoch and, per layer, the experts with more than one replica (expert×replicas)
      const p = msg.placement;
      const reps = p.replicas.map((row, i) => {
        const hot = row.map((n, e) => n > 1 ? e + '×' + n : null).filter(x => x);
        return hot.length ? 'L' + h.layers[i] + ' ' + hot.join(',') : null;
      }).filter(x => x);
      text += ' — placement epoch ' + p.epoch + ' (' + p.policy + '), replicas: ' + (reps.length ? reps.join(' · ') : 'none');
    }
    $('imbalance').textContent = text;
    renderWorkerTable(msg.worker_table);
  }

  // the remote workers' membership: state, experts, round trip, load share, last load time
  function renderWorkerTable(t) {
    const box = $('worker-table');
    if (!box) return;
    if (!t) { box.hidden = true; return; }
    box.hidden = false;
    const head = '<tr><th>worker</th><th>host</th><th>state</th><th>experts</th><th>rtt ms</th><th>load</th>'
      + '<th>calls</th><th>failures</th><th>load ms</th><th>since</th></tr>';
    const esc = (v) => String(v).replace(/[&<>"]/g, (ch) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[ch]));
    const rows = t.workers.map((w) => '<tr data-worker="' + esc(w.address) + '" data-state="' + esc(w.state) + '">'
      + '<td>' + esc(w.address) + '</td><td>' + esc(w.host || '–') + '</td>'
      + '<td class="state ' + esc(w.state) + '" title="' + esc(w.reason) + '">' + esc(w.state) + '</td>'
      + '<td>' + w.experts + '</td><td>' + (w.rtt_ms < 0 ? '–' : w.rtt_ms.toFixed(1)) + '</td>'
      + '<td>' + (100 * w.load).toFixed(1) + '%</td><td>' + fmt(w.calls) + '</td><td>' + fmt(w.failures) + '</td>'
      + '<td>' + (w.load_ms < 0 ? '–' : w.load_ms.toFixed(0) + (w.load_from_cache ? ' (cache)' : '')) + '</td>'
      + '<td>' + esc(w.since.replace('T', ' ').replace(/\.\d+Z$/, 'Z')) + '</td></tr>').join('');
    box.innerHTML = '<caption>expert workers — placement epoch ' + t.epoch + '</caption>' + head + rows;
  }

  // ------------------------------------------------------------------ charts

  function drawChart(canvas, series, colors, scale) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, hgt = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr); }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const span = (state.hello ? state.hello.history_seconds : 300) * 1000;
    const now = state.history.length ? state.history[state.history.length - 1].t : Date.now();
    let max = 0;
    series.forEach((f) => state.history.forEach((s) => { const v = f(s); if (v !== null && v > max) max = v; }));
    max = max <= 0 ? 1 : max * 1.15;
    const left = 44, bottom = 18, top = 6, right = 6;
    const x = (t) => left + (w - left - right) * (1 - (now - t) / span);
    const y = (v) => top + (hgt - top - bottom) * (1 - v / max);
    g.strokeStyle = '#2a323c'; g.fillStyle = '#8a94a3'; g.font = '10px system-ui'; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4, yy = y(v);
      g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
      g.fillText(fmt(v * scale), 2, yy + 3);
    }
    for (let m = 0; m <= span / 60000; m++) {
      const xx = x(now - m * 60000);
      g.textAlign = m === 0 ? 'right' : 'center';
      g.fillText(m === 0 ? 'now' : '-' + m + 'm', xx, hgt - 4);
    }
    g.textAlign = 'left';
    series.forEach((f, i) => {
      g.strokeStyle = colors[i]; g.fillStyle = colors[i]; g.lineWidth = 1.5; g.beginPath();
      let started = false;
      state.history.forEach((s) => {
        const v = f(s);
        if (v === null || v === undefined) { started = false; return; }
        if (!started) { g.moveTo(x(s.t), y(v)); started = true; } else { g.lineTo(x(s.t), y(v)); }
      });
      g.stroke();
      // the latest sample as a dot, so a series with a single sample shows too
      for (let k = state.history.length - 1; k >= 0; k--) {
        const v = f(state.history[k]);
        if (v !== null && v !== undefined) { g.fillRect(x(state.history[k].t) - 2, y(v) - 2, 4, 4); break; }
      }
    });
  }

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function drawCharts() {
    drawChart($('chart-throughput'), [(s) => s.output_tokens_per_s, (s) => s.prompt_tokens_per_s], [css('--c1'), css('--c2')], 1);
    drawChart($('chart-latency'), [(s) => s.ttft_p50, (s) => s.ttft_p90, (s) => s.tpot_p50, (s) => s.tpot_p90],
      [css('--c3'), css('--c4'), css('--c5'), css('--c6')], 1000);
  }

  function updateTiles(s) {
    $('k-tps').textContent = fmt(s.output_tokens_per_s);
    $('k-rps').textContent = fmt(s.requests_per_s);
    $('k-queue').textContent = s.running + ' · ' + s.waiting;
    $('k-batch').textContent = fmt(s.batch_size);
    $('k-kv').textContent = s.kv_used + ' / ' + s.kv_total;
    $('k-ttft').textContent = ms(s.ttft_p50) + ' · ' + ms(s.ttft_p90);
    $('k-tpot').textContent = ms(s.tpot_p50) + ' · ' + ms(s.tpot_p90);
  }

  // ------------------------------------------------------------------ feed

  function onMessage(ev) {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'hello') {
      state.hello = msg;
      state.history = msg.history.slice();
      $('model').textContent = msg.model;
      $('window').textContent = msg.window_seconds;
      buildHeatmap(msg);
      $('workers').innerHTML = '';
    } else if (msg.type === 'tick' && state.hello) {
      state.history.push(msg.second);
      while (state.history.length > state.hello.history_seconds) state.history.shift();
      updateTiles(msg.second);
    } else {
      return;
    }
    state.last = msg;
    updateHeatmap(msg);
    updateWorkers(msg);
    drawCharts();
    document.body.dataset.updates = String((Number(document.body.dataset.updates) || 0) + 1);
    setStatus('live', 'live');
  }

  function connect() {
    const es = new EventSource('/v1/epserve/live');
    es.onmessage = onMessage;
    es.addEventListener('loading', () => setStatus('loading', 'model loading'));
    es.onerror = () => { if (!document.body.dataset.updates || es.readyState !== EventSource.OPEN) setStatus('down', 'reconnecting'); };
  }

  document.querySelectorAll('input[name=mode]').forEach((r) => r.addEventListener('change', (e) => {
    state.mode = e.target.value;
    if (state.last) { updateHeatmap(state.last); updateWorkers(state.last); }
  }));
  window.addEventListener('resize', () => { if (state.hello) drawCharts(); });
  connect();
})();
