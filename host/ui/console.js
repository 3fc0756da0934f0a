// Keel console: a single page over the admin API (docs/operations.md "Console"). No framework and
// no build step: DOM built with h()/s() (never innerHTML, so no data is ever parsed as markup),
// one poll every two seconds for the view on screen. The admin token lives in sessionStorage
// (this tab only) and goes out only in the Authorization field of same-origin fetches.

const TOKEN_KEY = 'keel.console.token';
const THEME_KEY = 'keel.console.theme';
const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------------------------------------
// DOM helpers

function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  return el;
}

/** An HTML element: h('td', {class: 'num'}, 'text', child). */
function h(tag, props, ...kids) {
  return append(setProps(document.createElement(tag), props), kids);
}

/** An SVG element. */
function s(tag, props, ...kids) {
  return append(setProps(document.createElementNS(SVG_NS, tag), props), kids);
}

const $ = (id) => document.getElementById(id);

function fmt(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en');
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

function ago(unixMs) {
  const s = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(unixMs).toISOString().replace('T', ' ').slice(0, 16);
}

function sum(values) {
  return (values || []).reduce((a, b) => a + (b || 0), 0);
}

/** Mean per second over the last `n` samples of a per-second series. */
function rate(values, n = 10) {
  const tail = (values || []).slice(-n);
  return tail.length ? sum(tail) / tail.length : 0;
}

/** A sparkline of a series (nulls are gaps drawn as 0), scaled to its own maximum. */
function sparkline(values, label, bad = false) {
  const w = 64, hgt = 20, data = (values || []).map((v) => v || 0);
  const max = Math.max(1e-9, ...data);
  const step = data.length > 1 ? w / (data.length - 1) : w;
  const points = data.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
  if (points.length === 1) points.push(`${w},${points[0].split(',')[1]}`);
  return s('svg', { viewBox: `0 0 ${w} ${hgt}`, role: 'img', 'aria-label': label },
    s('title', {}, label), points.length ? s('polyline', { points: points.join(' ') }) : null);
}

function badge(text, tone) {
  return h('span', { class: `badge ${tone || ''}` }, text);
}

// Keeps keyboard focus on the same control when a view is drawn again (data-key names it).
function redraw(container, draw) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.getAttribute('data-key') : null;
  container.replaceChildren(...[draw()].flat());
  if (key) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// The admin API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) || '';

async function api(method, path, { body, tokenOverride, contentType = 'application/json' } = {}) {
  const headers = { Authorization: `Bearer ${tokenOverride ?? token}` };
  if (body !== undefined) headers['Content-Type'] = contentType;
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    throw new ApiError(0, 'network', `the host did not answer (${e.message})`);
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = json && json.error ? json.error : {};
    const e = new ApiError(res.status, err.code || String(res.status), err.message || text || res.statusText);
    e.body = json;
    if (res.status === 429) e.retryAfter = res.headers.get('Retry-After');
    if (res.status === 401 && tokenOverride === undefined) signOut('The admin token was refused: sign in again.');
    throw e;
  }
  return json;
}

// ---------------------------------------------------------------------------------------------
// Theme

function applyTheme() {
  const picked = localStorage.getItem(THEME_KEY);
  const dark = picked ? picked === 'dark' : window.matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.setAttribute('data-theme', dark ? 'dark' : 'light');
  const button = $('theme');
  if (button) button.textContent = dark ? 'Light theme' : 'Dark theme';
}

function toggleTheme() {
  const dark = document.documentElement.getAttribute('data-theme') === 'dark';
  localStorage.setItem(THEME_KEY, dark ? 'light' : 'dark');
  applyTheme();
}

// ---------------------------------------------------------------------------------------------
// Confirmation dialog: asks, runs the action, shows the API's answer.

function confirmAction({ title, body, okLabel = 'Confirm', danger = false, run }) {
  const dialog = $('confirm');
  const ok = $('confirm-ok');
  const cancel = $('confirm-cancel');
  const answer = $('confirm-answer');
  $('confirm-title').textContent = title;
  $('confirm-body').replaceChildren(...[body].flat().map((b) => (b instanceof Node ? b : h('p', {}, b))));
  answer.hidden = true;
  answer.className = 'answer';
  ok.hidden = false;
  ok.disabled = false;
  ok.textContent = okLabel;
  ok.className = danger ? 'danger' : 'primary';
  cancel.textContent = 'Cancel';
  ok.onclick = async () => {
    ok.disabled = true;
    cancel.disabled = true;
    answer.hidden = false;
    answer.replaceChildren('Working…');
    try {
      const result = await run();
      answer.className = 'answer ok';
      answer.replaceChildren(h('strong', {}, 'Done. '), result && result.message ? result.message : '',
        h('pre', {}, JSON.stringify(result, null, 2)));
    } catch (e) {
      answer.className = 'answer bad';
      answer.replaceChildren(h('strong', {}, `Refused (${e.status || 'no answer'} ${e.code || ''}). `),
        h('pre', { class: 'reason-text' }, e.message));
    }
    ok.hidden = true;
    cancel.disabled = false;
    cancel.textContent = 'Close';
    cancel.focus();
    refresh();
  };
  dialog.showModal();
  cancel.focus();
}

// ---------------------------------------------------------------------------------------------
// Deploy: upload a plugin file, show its pre-flight, install on confirmation.

function preflightReport(report, title) {
  const m = report.manifest || {};
  const install = report.install || {};
  const rows = [
    ['Name', m.name ? `${m.name} ${m.version}` : '–'],
    ['Description', m.description || '–'],
    ['ABI', m.abi ? `${m.abi} (host ${m.host_abi})` : '–'],
    ['Installs as', install.file || '–'],
    ['Replaces', install.replaces ? `${install.replaces.name} ${install.replaces.version}, generation ${install.replaces.generation} (${install.replaces.state})` : 'nothing: a new plugin'],
    ['Dependencies', (m.dependencies || []).map((d) => `${d.name} ${d.version}`).join(', ') || 'none'],
    ['Routes', (m.routes || []).map((r) => `${r.method} ${r.path}`).join('\n') || 'none'],
    ['Events', m.events ? [...(m.events.publishes || []).map((t) => `publishes ${t}`), ...(m.events.subscribes || []).map((t) => `subscribes ${t}`)].join('\n') || 'none' : '–'],
    ['Permissions', (m.permissions || []).join(', ') || 'none'],
    ['SHA-256', report.sha256 || '–'],
  ];
  return h('div', { class: 'preflight' },
    h('p', {}, h('strong', {}, title)),
    report.error ? h('p', { class: 'error', id: 'deploy-error' }, report.error) : null,
    h('dl', {}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, h('pre', {}, v))])),
    (report.warnings || []).map((w) => h('p', { class: 'muted' }, `Warning: ${w}`)));
}

function openDeploy() {
  const dialog = $('deploy');
  const file = $('deploy-file');
  const report = $('deploy-report');
  const check = $('deploy-check');
  const install = $('deploy-install');
  const cancel = $('deploy-cancel');
  file.value = '';
  report.hidden = true;
  install.disabled = true;
  install.hidden = false;
  check.disabled = false;
  cancel.textContent = 'Cancel';
  let bytes = null;
  const show = (cls, ...content) => {
    report.hidden = false;
    report.className = `answer ${cls}`;
    report.replaceChildren(...content.flat());
  };
  file.onchange = () => { install.disabled = true; report.hidden = true; };
  check.onclick = async () => {
    if (!file.files.length) return show('bad', 'Choose a plugin file first.');
    check.disabled = true;
    show('', 'Checking…');
    bytes = await file.files[0].arrayBuffer();
    try {
      const answer = await api('POST', '/admin/plugins?dry_run=true', { body: bytes, contentType: 'application/octet-stream' });
      show('ok', preflightReport(answer.preflight, 'Pre-flight passed. Install it?'));
      install.disabled = false;
      install.focus();
    } catch (e) {
      show('bad', e.body && e.body.preflight ? preflightReport(e.body.preflight, 'Pre-flight refused this file: it cannot be installed.')
        : h('p', { class: 'error', id: 'deploy-error' }, `Refused (${e.status || 'no answer'}): ${e.message}`));
    }
    check.disabled = false;
  };
  install.onclick = async () => {
    install.disabled = true;
    check.disabled = true;
    show('', 'Installing…');
    try {
      const answer = await api('POST', '/admin/plugins', { body: bytes, contentType: 'application/octet-stream' });
      const p = answer.plugin || {};
      show('ok', h('p', { id: 'deploy-done' }, h('strong', {}, 'Installed. '), `${p.name} ${p.version} is ${p.state}, generation ${p.generation}. `, answer.message || ''));
    } catch (e) {
      show('bad', h('p', { class: 'error', id: 'deploy-error' }, `Not installed (${e.status || 'no answer'} ${e.code || ''}): ${e.message}`));
    }
    install.hidden = true;
    check.disabled = false;
    cancel.textContent = 'Close';
    cancel.focus();
    refresh();
  };
  dialog.showModal();
  file.focus();
}

// ---------------------------------------------------------------------------------------------
// Views. Each has load() (the API reads it needs) and draw(data) (DOM from them).

const ui = { filter: '', sort: { key: 'name', dir: 1 }, routesPlugin: '' };

function whereOf(p) {
  if (p.remote) return `host ${p.remote}`;
  if (p.isolation === 'process') return p.runner && p.runner.pid ? `own process (pid ${p.runner.pid})` : 'own process';
  return 'in process';
}

function stateTone(state) {
  return { started: 'ok', disabled: '', failed: 'bad', stopped: 'warn', quarantined: 'bad' }[state] ?? 'warn';
}

function healthTone(status) {
  return { pass: 'ok', warn: 'warn', fail: 'bad' }[status] ?? '';
}

function lastFailure(p) {
  return p.reason || (p.reloads && p.reloads.last_error) || (p.runner && p.runner.last_crash) || '';
}

function trafficOf(traffic, name) {
  const t = traffic && traffic.plugins ? traffic.plugins[name] : null;
  if (!t) return { rps: 0, errorRate: null, p99: null, requests: [], errors: [], p99s: [] };
  const requests = sum(t.requests);
  return {
    rps: rate(t.requests),
    errorRate: requests ? (100 * sum(t.errors)) / requests : null,
    p99: t.p99_minute_ms ?? null,
    requests: t.requests,
    errors: t.errors,
    p99s: t.p99_ms,
  };
}

// Plugins this host loads, and those only other hosts of the cluster serve.
function allModules(plugins, cluster) {
  const rows = plugins.map((p) => ({ ...p }));
  const here = new Set(rows.map((p) => p.name));
  for (const node of (cluster && cluster.nodes) || []) {
    for (const p of node.plugins || []) {
      if (here.has(p.name)) continue;
      here.add(p.name);
      rows.push({ name: p.name, version: p.version, state: 'remote', remote: node.node, mount: p.mount,
        health: p.health ? { status: p.health } : null, routes: (p.routes || []).map((r) => `${r.method} ${r.path}`) });
    }
  }
  return rows;
}

const modulesView = {
  title: 'Modules',
  async load() {
    const [plugins, traffic, cluster] = await Promise.all([
      api('GET', '/admin/plugins'), api('GET', '/admin/traffic'), api('GET', '/admin/cluster')]);
    return { plugins, traffic, cluster };
  },
  draw({ plugins, traffic, cluster }) {
    const rows = allModules(plugins, cluster).map((p) => ({ ...p, t: trafficOf(traffic, p.name) }));
    const started = rows.filter((p) => p.state === 'started').length;
    const failed = rows.filter((p) => p.state === 'failed').length;
    const rps = rows.reduce((a, p) => a + p.t.rps, 0);
    const summary = h('div', { class: 'summary' },
      h('div', { class: 'card' }, h('div', { class: 'value', id: 'started-count' }, `${started}/${rows.length}`),
        h('div', { class: 'label' }, 'modules started')),
      h('div', { class: 'card' }, h('div', { class: `value ${failed ? 'error' : ''}` }, failed),
        h('div', { class: 'label' }, 'failed')),
      h('div', { class: 'card' }, h('div', { class: 'value' }, fmt(rps)), h('div', { class: 'label' }, 'requests/s (last 10 s)')),
      h('div', { class: 'card' }, h('div', { class: 'value' }, cluster && cluster.node ? cluster.node : 'single host'),
        h('div', { class: 'label' }, cluster && cluster.node ? `cluster link ${cluster.link.state}` : 'no cluster')));

    const needle = ui.filter.trim().toLowerCase();
    const shown = rows.filter((p) => !needle || [p.name, p.state, whereOf(p), p.version, p.health && p.health.status]
      .some((v) => String(v || '').toLowerCase().includes(needle)));
    const key = ui.sort.key;
    const value = (p) => ({ name: p.name, state: p.state, rps: p.t.rps, errors: p.t.errorRate ?? -1, p99: p.t.p99 ?? -1,
      generation: p.generation ?? 0 })[key];
    shown.sort((a, b) => {
      const x = value(a), y = value(b);
      return (x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name)) * ui.sort.dir;
    });

    const th = (label, sortKey, cls) => {
      if (!sortKey) return h('th', { scope: 'col', class: cls }, label);
      const sorted = ui.sort.key === sortKey;
      return h('th', { scope: 'col', class: cls, 'aria-sort': sorted ? (ui.sort.dir > 0 ? 'ascending' : 'descending') : 'none' },
        h('button', { type: 'button', 'data-key': `sort-${sortKey}`, onclick: () => {
          ui.sort = { key: sortKey, dir: sorted ? -ui.sort.dir : 1 };
          refresh(true);
        } }, label));
    };
    const act = (p, action, label, danger) => h('button', {
      type: 'button', class: `small ${danger ? 'danger' : ''}`, 'data-key': `${action}-${p.name}`,
      'aria-label': `${label} ${p.name}`,
      onclick: () => confirmAction({
        title: `${label} ${p.name}?`,
        body: {
          disable: `Stops ${p.name}: its routes answer 503 and its subscriptions pause until it is enabled again.`,
          enable: `Starts ${p.name} again from its file.`,
          reload: `Replaces ${p.name} with what its file holds now (generation ${p.generation} → next), after a pre-flight check. Requests in flight finish on the old generation.`,
        }[action],
        okLabel: label, danger,
        run: () => api('POST', `/admin/plugins/${encodeURIComponent(p.name)}/${action}`),
      }),
    }, label);

    const body = shown.map((p) => {
      const health = p.health && p.health.status ? badge(p.health.status, healthTone(p.health.status)) : h('span', { class: 'muted' }, '–');
      const failure = lastFailure(p);
      const local = !p.remote;
      return h('tr', { 'data-plugin': p.name },
        h('td', { 'data-label': 'Module' }, h('strong', {}, p.name), h('span', { class: 'sub' }, `v${p.version || '?'} · ${p.mount || ''}`)),
        h('td', { 'data-label': 'State' }, badge(p.state, stateTone(p.state))),
        h('td', { 'data-label': 'Generation', class: 'num' }, p.generation ?? '–'),
        h('td', { 'data-label': 'Where' }, whereOf(p)),
        h('td', { 'data-label': 'Health' }, health, p.health && p.health.detail ? h('span', { class: 'sub' }, p.health.detail) : null),
        h('td', { 'data-label': 'Requests/s', class: 'num' },
          h('span', { class: 'spark' }, sparkline(p.t.requests, `requests per second of ${p.name}, last minute`), h('span', { class: 'v' }, fmt(p.t.rps)))),
        h('td', { 'data-label': '5xx', class: 'num' },
          h('span', { class: `spark ${p.t.errorRate ? 'bad' : ''}` }, sparkline(p.t.errors, `5xx per second of ${p.name}, last minute`, true),
            h('span', { class: 'v' }, p.t.errorRate === null ? '–' : `${fmt(p.t.errorRate)} %`))),
        h('td', { 'data-label': 'p99', class: 'num' },
          h('span', { class: 'spark' }, sparkline(p.t.p99s, `p99 latency of ${p.name} per second, last minute`),
            h('span', { class: 'v' }, p.t.p99 === null ? '–' : `${fmt(p.t.p99)} ms`))),
        h('td', { 'data-label': 'Last failure' }, failure ? h('span', { class: 'reason' }, failure) : h('span', { class: 'muted' }, '–')),
        h('td', { 'data-label': 'Actions', class: 'actions' }, local ? [
          p.state === 'disabled' ? act(p, 'enable', 'Enable') : act(p, 'disable', 'Disable', true),
          p.state !== 'disabled' ? act(p, 'reload', 'Reload') : null,
        ] : h('span', { class: 'muted' }, 'on its host')));
    });

    const table = h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'modules' },
      h('caption', { class: 'vh' }, 'Modules'),
      h('thead', {}, h('tr', {}, th('Module', 'name'), th('State', 'state'), th('Gen', 'generation', 'num'), th('Where'),
        th('Health'), th('Requests/s', 'rps', 'num'), th('5xx (1 min)', 'errors', 'num'), th('p99 (1 min)', 'p99', 'num'),
        th('Last failure'), th('Actions'))),
      h('tbody', {}, body.length ? body : h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No module matches the filter.')))));
    return [summary, table];
  },
  toolbar() {
    const input = h('input', { type: 'search', id: 'filter', placeholder: 'name, state, where…', value: ui.filter,
      oninput: (e) => { ui.filter = e.target.value; refresh(true); } });
    return h('div', { class: 'toolbar' }, h('label', { for: 'filter' }, 'Filter'), input,
      h('button', { type: 'button', class: 'primary', id: 'deploy-open', onclick: openDeploy }, 'Deploy a plugin…'));
  },
};

// Topic patterns (docs/events.md): '*' is one segment, a last '#' zero or more.
function topicMatches(pattern, topic) {
  const p = pattern.split('.'), t = topic.split('.');
  for (let i = 0; i < p.length; ++i) {
    if (p[i] === '#' && i === p.length - 1) return true;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

const mapView = {
  title: 'Module map',
  async load() {
    const [plugins, traffic, subscriptions, cluster] = await Promise.all([api('GET', '/admin/plugins'),
      api('GET', '/admin/traffic'), api('GET', '/admin/events/subscriptions'), api('GET', '/admin/cluster')]);
    return { plugins, traffic, subscriptions, cluster };
  },
  draw({ plugins, traffic, subscriptions, cluster }) {
    const modules = allModules(plugins, cluster);
    const byName = new Map(modules.map((p) => [p.name, p]));
    const deps = (p) => ((p.manifest && p.manifest.dependencies) || []).map((d) => d.name);
    // A module that cannot work because something it depends on is not started.
    const blockedBy = (p, seen = new Set()) => {
      for (const d of deps(p)) {
        const target = byName.get(d);
        if (!target || target.state === 'failed' || target.state === 'disabled') return d;
        if (!seen.has(d)) {
          seen.add(d);
          const deeper = blockedBy(target, seen);
          if (deeper) return deeper;
        }
      }
      return null;
    };
    // Event flows from the manifests: a publisher's topics that a subscriber's pattern matches.
    const flows = [];
    for (const sub of modules) {
      for (const pattern of (sub.manifest && sub.manifest.events && sub.manifest.events.subscribes) || []) {
        for (const pub of modules) {
          const topics = ((pub.manifest && pub.manifest.events && pub.manifest.events.publishes) || []).filter((t) => topicMatches(pattern, t));
          if (topics.length) flows.push({ pub: pub.name, sub: sub.name, pattern });
        }
      }
    }
    // Columns: a module left of what it depends on and of what receives its events.
    const leftOf = new Map(modules.map((p) => [p.name, []]));  // name -> the modules drawn left of it
    for (const p of modules) for (const d of deps(p)) if (leftOf.has(d)) leftOf.get(d).push(p.name);
    for (const f of flows) if (f.pub !== f.sub) leftOf.get(f.sub).push(f.pub);
    const column = new Map();
    const columnOf = (name, stack = new Set()) => {
      if (column.has(name)) return column.get(name);
      if (stack.has(name)) return 0;  // a cycle: drawn where it is met
      stack.add(name);
      const c = Math.max(-1, ...leftOf.get(name).map((x) => columnOf(x, stack))) + 1;
      stack.delete(name);
      column.set(name, c);
      return c;
    };
    const columns = [];
    for (const p of [...modules].sort((x, y) => x.name.localeCompare(y.name))) (columns[columnOf(p.name)] ||= []).push(p);
    // Fewer crossings: each module next to the mean row of the modules left of it.
    const row = new Map();
    columns.forEach((col) => {
      if (!col) return;
      const mean = (p) => {
        const rows = leftOf.get(p.name).filter((x) => row.has(x)).map((x) => row.get(x));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      col.sort((x, y) => mean(x) - mean(y) || x.name.localeCompare(y.name));
      col.forEach((p, i) => row.set(p.name, i));
    });
    const W = 190, H = 56, GX = 270, GY = 46, PAD = 30;
    const pos = new Map();
    const tallest = Math.max(1, ...columns.map((c) => (c || []).length));
    columns.forEach((col, ci) => (col || []).forEach((p, ri) => {
      const offset = ((tallest - col.length) * (H + GY)) / 2;
      pos.set(p.name, { x: PAD + ci * (W + GX), y: PAD + offset + ri * (H + GY) });
    }));
    const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX + 120;  // room for loops on the right
    const height = PAD * 2 + tallest * H + (tallest - 1) * GY + 20;

    const edges = [];
    for (const p of modules) for (const d of deps(p)) if (pos.has(d)) edges.push({ from: p.name, to: d, kind: 'dep', label: 'depends on' });
    for (const c of (traffic && traffic.calls) || []) {
      if (!pos.has(c.caller) || !pos.has(c.target)) continue;
      const calls = sum(c.calls), errors = sum(c.errors);
      if (!calls && !errors) continue;
      edges.push({ from: c.caller, to: c.target, kind: 'call',
        label: `${calls} calls/min${errors ? ` · ${errors} errors` : ''}${c.p99_minute_ms != null ? ` · p99 ${fmt(c.p99_minute_ms)} ms` : ''}` });
    }
    const topicCount = (publisher, pattern) => ((traffic && traffic.topics) || [])
      .filter((t) => t.publisher === publisher && topicMatches(pattern, t.topic)).reduce((a, t) => a + sum(t.published), 0);
    for (const f of flows) {
      if (!pos.has(f.pub) || !pos.has(f.sub)) continue;
      const stream = subscriptions.find((x) => x.publisher === f.pub && x.subscriber === f.sub);
      const lag = stream ? stream.lag : subscriptions.filter((x) => !x.publisher && x.subscriber === f.sub).reduce((a, x) => a + x.queued, 0);
      edges.push({ from: f.pub, to: f.sub, kind: 'event', label: `${f.pattern} · ${topicCount(f.pub, f.pattern)}/min · lag ${lag}` });
    }
    // Parallel edges between the same two modules fan out.
    const seen = new Map();
    const drawn = edges.map((e) => {
      const key = [e.from, e.to].sort().join('|');
      const n = seen.get(key) || 0;
      seen.set(key, n + 1);
      const a = pos.get(e.from), b = pos.get(e.to);
      const ax = a.x + (b.x >= a.x ? W : 0), bx = b.x + (b.x >= a.x ? 0 : W);
      const sameColumn = a.x === b.x;
      const ay = a.y + H / 2, by = b.y + H / 2;
      const bend = Math.ceil(n / 2) * 24 * (n % 2 ? -1 : 1);
      // Labels sit at different points along their curves, so parallel links do not stack them.
      const t = { dep: 0.5, call: 0.3, event: 0.7 }[e.kind];
      let d, lx, ly;
      if (sameColumn) {
        const x = a.x + W, cx = x + 60 + n * 20;
        d = `M${x},${ay} C${cx},${ay} ${cx},${by} ${x},${by}`;
        lx = cx + 4; ly = (ay + by) / 2;
      } else {
        const sy = ay + bend / 3, ey = by + bend / 3, mx = (ax + bx) / 2, my = (ay + by) / 2 + bend;
        d = `M${ax},${sy} Q${mx},${my} ${bx},${ey}`;
        const u = 1 - t;
        lx = u * u * ax + 2 * u * t * mx + t * t * bx;
        ly = u * u * sy + 2 * u * t * my + t * t * ey - 6;
      }
      return s('g', { class: `edge-group ${e.kind}`, 'data-from': e.from, 'data-to': e.to, 'data-kind': e.kind },
        s('path', { class: `edge ${e.kind}`, d, 'marker-end': `url(#arrow-${e.kind})` }),
        s('text', { class: `edge-label ${e.kind}`, x: lx, y: ly, 'text-anchor': sameColumn ? 'start' : 'middle' }, e.label));
    });
    const nodes = modules.map((p) => {
      const { x, y } = pos.get(p.name);
      const blocker = p.state === 'started' ? blockedBy(p) : null;
      const cls = p.state === 'failed' ? 'failed' : blocker ? 'blocked' : p.state === 'started' || p.state === 'remote' ? 'started' : '';
      const sub = blocker ? `needs ${blocker} (not started)` : `${p.state} · ${whereOf(p)}`;
      return s('g', { class: `node ${cls}`, 'data-plugin': p.name, transform: `translate(${x},${y})` },
        s('title', {}, `${p.name} ${p.version || ''}: ${sub}`),
        s('rect', { width: W, height: H, rx: 10 }),
        s('text', { x: 12, y: 23 }, s('tspan', { 'font-weight': 700 }, p.name), ` v${p.version || '?'}`),
        s('text', { x: 12, y: 42, class: 'sub' }, sub.length > 30 ? `${sub.slice(0, 29)}…` : sub));
    });
    const marker = (kind) => s('marker', { id: `arrow-${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: `edge ${kind}` }));
    const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', id: 'module-map',
      'aria-label': `Module map: ${modules.length} modules, ${edges.length} links` },
    s('defs', {}, marker('dep'), marker('call'), marker('event')), drawn, nodes);
    const legend = h('p', { class: 'legend' },
      h('span', {}, h('span', { class: 'line dep' }), 'declared dependency'),
      h('span', {}, h('span', { class: 'line call' }), 'calls observed in the last minute'),
      h('span', {}, h('span', { class: 'line event' }), 'events: pattern, published in the last minute, lag'),
      h('span', {}, 'dashed red outline: failed, or depends on a module that is not started'));
    // The same facts as text, for screen readers and for copying.
    const list = h('ul', { class: 'vh' }, edges.map((e) => h('li', {}, `${e.from} → ${e.to}: ${e.label}`)));
    return [h('div', { class: 'panel map' }, svg), legend, list];
  },
};

const eventsView = {
  title: 'Events',
  async load() {
    const [topics, subscriptions, deadLetters, traffic] = await Promise.all([api('GET', '/admin/events/topics'),
      api('GET', '/admin/events/subscriptions'), api('GET', '/admin/events/dead-letters'), api('GET', '/admin/traffic')]);
    return { topics, subscriptions, deadLetters, traffic };
  },
  draw({ topics, subscriptions, deadLetters, traffic }) {
    const series = (t) => ((traffic && traffic.topics) || []).find((x) => x.publisher === t.publisher && x.topic === t.topic);
    const topicRows = topics.map((t) => {
      const sr = series(t);
      return h('tr', {},
        h('td', { 'data-label': 'Topic' }, t.topic || h('em', { class: 'muted' }, 'undeclared')),
        h('td', { 'data-label': 'Publisher' }, t.publisher),
        h('td', { 'data-label': 'Kind' }, badge(t.durable ? 'durable' : 'in-memory', t.durable ? 'ok' : '')),
        h('td', { 'data-label': 'Published', class: 'num', 'data-topic': `${t.publisher}/${t.topic}` }, fmt(t.published)),
        h('td', { 'data-label': 'Per second', class: 'num' },
          h('span', { class: 'spark' }, sparkline(sr ? sr.published : [], `events per second on ${t.topic}`), h('span', { class: 'v' }, fmt(sr ? rate(sr.published) : 0)))),
        h('td', { 'data-label': 'Refused', class: 'num' }, t.refused ? h('span', { class: 'error' }, fmt(t.refused)) : '0'));
    });
    const subRows = subscriptions.map((x) => h('tr', {},
      h('td', { 'data-label': 'Subscriber' }, x.subscriber),
      h('td', { 'data-label': 'Stream' }, x.kind === 'durable' ? `durable from ${x.publisher}` : 'in-memory inbox'),
      h('td', { 'data-label': 'Delivered', class: 'num' }, fmt(x.delivered)),
      h('td', { 'data-label': 'Failed', class: 'num' }, fmt(x.failed)),
      h('td', { 'data-label': 'Retried', class: 'num' }, fmt(x.retried)),
      h('td', { 'data-label': 'Dead letters', class: 'num' }, x.dead_lettered ? h('span', { class: 'error' }, fmt(x.dead_lettered)) : '0'),
      h('td', { 'data-label': 'Queued', class: 'num' }, fmt(x.queued)),
      h('td', { 'data-label': 'Lag', class: 'num' }, x.lag ? badge(fmt(x.lag), x.lag > 1000 ? 'bad' : 'warn') : '0')));
    const letterPath = (d) => `/admin/events/dead-letters/${encodeURIComponent(d.kind)}/${encodeURIComponent(d.publisher)}/${encodeURIComponent(d.subscriber)}/${encodeURIComponent(d.seq)}`;
    const letterRows = deadLetters.map((d) => {
      const preview = typeof d.payload === 'string' ? d.payload : JSON.stringify(d.payload);
      const id = `${d.kind}-${d.publisher}-${d.subscriber}-${d.seq}`;
      return h('tr', { 'data-dead-letter': id },
        h('td', { 'data-label': 'Event' }, h('strong', {}, d.topic), h('span', { class: 'sub mono' }, d.event_id)),
        h('td', { 'data-label': 'Route' }, `${d.publisher || '?'} → ${d.subscriber}`, h('span', { class: 'sub' }, d.kind)),
        h('td', { 'data-label': 'Attempts', class: 'num' }, d.attempts, h('span', { class: 'sub' }, d.last_status)),
        h('td', { 'data-label': 'Failed' }, d.failed_unix_ms ? ago(d.failed_unix_ms) : '–'),
        h('td', { 'data-label': 'Payload' }, h('pre', { class: 'payload' }, preview.length > 600 ? `${preview.slice(0, 600)}…` : preview)),
        h('td', { 'data-label': 'Actions', class: 'actions' },
          h('button', { type: 'button', class: 'small', 'data-key': `resubmit-${id}`, onclick: () => confirmAction({
            title: `Resubmit ${d.topic} to ${d.subscriber}?`, body: 'Delivers the event again, with fresh attempts.',
            okLabel: 'Resubmit', run: () => api('POST', `${letterPath(d)}/resubmit`) }) }, 'Resubmit'),
          h('button', { type: 'button', class: 'small danger', 'data-key': `discard-${id}`, onclick: () => confirmAction({
            title: `Discard ${d.topic} for ${d.subscriber}?`, body: 'The event is dropped for this subscriber for good.',
            okLabel: 'Discard', danger: true, run: () => api('DELETE', letterPath(d)) }) }, 'Discard')));
    });
    const table = (id, heads, rows, empty) => h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id },
      h('thead', {}, h('tr', {}, heads.map(([label, cls]) => h('th', { scope: 'col', class: cls }, label)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: heads.length, class: 'empty' }, empty)))));
    return [
      h('h2', {}, 'Topics'),
      table('topics', [['Topic'], ['Publisher'], ['Kind'], ['Published', 'num'], ['Per second', 'num'], ['Refused', 'num']],
        topicRows, 'No plugin declares a topic.'),
      h('h2', {}, 'Subscriptions'),
      table('subscriptions', [['Subscriber'], ['Stream'], ['Delivered', 'num'], ['Failed', 'num'], ['Retried', 'num'],
        ['Dead letters', 'num'], ['Queued', 'num'], ['Lag', 'num']], subRows, 'No subscriptions.'),
      h('h2', {}, `Dead letters (${deadLetters.length})`),
      table('dead-letters', [['Event'], ['Route'], ['Attempts', 'num'], ['Failed'], ['Payload'], ['Actions']], letterRows,
        'None: every event was delivered or is still being retried.'),
    ];
  },
};

function schemaText(schema) {
  return JSON.stringify(schema, null, 2);
}

const routesView = {
  title: 'Routes',
  async load() {
    // /openapi.json is public and not on an [admin] listen listener: fetched without the token,
    // and the routes show without it.
    const [routes, openapi] = await Promise.all([api('GET', '/admin/routes'),
      fetch('/openapi.json', { cache: 'no-store', credentials: 'omit' }).then((r) => (r.ok ? r.json() : null)).catch(() => null)]);
    return { routes, openapi };
  },
  draw({ routes, openapi }) {
    const plugins = [...new Set(routes.filter((r) => r.plugin).map((r) => r.plugin))].sort();
    const pick = h('select', { id: 'routes-plugin', 'data-key': 'routes-plugin', onchange: (e) => { ui.routesPlugin = e.target.value; refresh(true); } },
      h('option', { value: '' }, 'every module and the host'),
      plugins.map((p) => h('option', { value: p, selected: ui.routesPlugin === p }, p)),
      h('option', { value: '-', selected: ui.routesPlugin === '-' }, 'the host itself'));
    const shown = routes.filter((r) => !ui.routesPlugin || (ui.routesPlugin === '-' ? r.builtin : r.plugin === ui.routesPlugin));
    const table = h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'routes' },
      h('thead', {}, h('tr', {}, ['Module', 'Method', 'Path', 'Summary'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, shown.map((r) => h('tr', {},
        h('td', { 'data-label': 'Module' }, r.plugin || h('span', { class: 'muted' }, 'host')),
        h('td', { 'data-label': 'Method' }, h('span', { class: `method ${r.method.toLowerCase()}` }, r.method)),
        h('td', { 'data-label': 'Path', class: 'mono' }, r.path),
        h('td', { 'data-label': 'Summary' }, r.summary || ''))))));
    if (!openapi) {
      return [h('div', { class: 'toolbar' }, h('label', { for: 'routes-plugin' }, 'Show'), pick), table,
        h('p', { class: 'muted' }, 'The OpenAPI document is not served where the console is (with [admin] listen it is on the public listener, at /openapi.json).')];
    }
    // The OpenAPI document, one operation per line, details on demand.
    const ops = [];
    for (const [path, item] of Object.entries(openapi.paths || {})) {
      for (const [method, op] of Object.entries(item)) {
        if (typeof op !== 'object' || !op) continue;
        const tag = (op.tags || [])[0] || '';
        if (ui.routesPlugin && ui.routesPlugin !== '-' && tag !== ui.routesPlugin) continue;
        if (ui.routesPlugin === '-') continue;
        const params = (op.parameters || []).map((p) => h('li', {}, h('code', {}, p.name), ` (${p.in}${p.required ? ', required' : ''})`,
          p.description ? ` — ${p.description}` : '', p.schema ? h('span', { class: 'muted' }, ` ${JSON.stringify(p.schema)}`) : ''));
        const request = op.requestBody && op.requestBody.content ? Object.entries(op.requestBody.content).map(([type, c]) =>
          h('div', {}, h('strong', {}, `Request ${type}`), c.schema ? h('pre', {}, schemaText(c.schema)) : null)) : [];
        const responses = Object.entries(op.responses || {}).map(([code, r]) => h('div', {},
          h('strong', {}, code), ` ${r.description || ''}`,
          r.content ? Object.entries(r.content).map(([type, c]) => c.schema ? h('pre', {}, `${type}\n${schemaText(c.schema)}`) : null) : null));
        ops.push(h('details', {},
          h('summary', {}, h('span', { class: `method ${method}` }, method.toUpperCase()), h('code', {}, path),
            h('span', { class: 'muted' }, op.summary || ''), tag ? badge(tag) : null),
          params.length ? [h('strong', {}, 'Parameters'), h('ul', {}, params)] : null, request, responses));
      }
    }
    const info = openapi.info || {};
    return [
      h('div', { class: 'toolbar' }, h('label', { for: 'routes-plugin' }, 'Show'), pick),
      table,
      h('h2', {}, `OpenAPI: ${info.title || ''} ${info.version || ''}`),
      h('p', { class: 'muted' }, 'The document the host generates from the manifests, at ', h('a', { href: '/openapi.json' }, '/openapi.json'), '.'),
      h('div', { class: 'panel openapi', id: 'openapi' }, ops.length ? ops : h('p', { class: 'empty' }, 'No operation.')),
    ];
  },
};

// The live tail: GET /admin/logs/stream read with fetch (EventSource cannot send the token), the
// Server-Sent Events parsed here. A click on a request id shows that request's lines and spans.
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];
const MAX_LOG_LINES = 1000;

function logTime(ts) {
  return (ts || '').slice(11, 23);
}

/** Microseconds since the epoch of a line's "2026-12-07T13:06:28.373123Z". */
function logMicros(ts) {
  return Date.parse(`${ts.slice(0, 19)}Z`) * 1000 + Number(ts.slice(20, 26));
}

/** The key=value fields of a log message ("span kind=call caller=orders ... duration_us=812"). */
function messageFields(msg) {
  const out = {};
  for (const m of (msg || '').matchAll(/(?:^|\s)([a-z_]+)=("[^"]*"|\S*)/g)) out[m[1]] = m[2].replace(/^"|"$/g, '');
  return out;
}

const logsView = {
  title: 'Logs',
  live: true,
  filter: { level: 'info', plugin: '', request_id: '' },
  paused: false,
  held: [],
  abort: null,
  retry: null,
  list: null,
  count: 0,
  lastSeq: 0,  // the newest line shown: a reconnect's backlog repeats nothing

  mount(container) {
    const f = this.filter;
    const level = h('select', { id: 'log-level', onchange: (e) => { f.level = e.target.value; this.restart(); } },
      LOG_LEVELS.map((l) => h('option', { value: l, selected: f.level === l }, l)));
    const plugin = h('select', { id: 'log-plugin', onchange: (e) => { f.plugin = e.target.value; this.restart(); } },
      h('option', { value: '' }, 'every module and the host'));
    api('GET', '/admin/plugins').then((plugins) => {
      for (const p of plugins.map((x) => x.name).sort()) append(plugin, [h('option', { value: p, selected: f.plugin === p }, p)]);
    }).catch(() => {});
    const requestId = h('input', { id: 'log-request', type: 'search', placeholder: 'any', value: f.request_id, spellcheck: 'false',
      onchange: (e) => { f.request_id = e.target.value.trim(); this.restart(); } });
    const pause = h('button', { type: 'button', id: 'log-pause', 'aria-pressed': 'false', onclick: () => this.togglePause(pause) }, 'Pause');
    const clear = h('button', { type: 'button', class: 'ghost', onclick: () => { this.list.replaceChildren(); this.count = 0; this.showState(); } }, 'Clear');
    this.state = h('span', { id: 'log-state', class: 'muted', role: 'status' }, 'Connecting…');
    this.detail = h('section', { id: 'request-detail', class: 'panel', hidden: true, 'aria-live': 'polite' });
    this.list = h('ol', { id: 'log-lines', class: 'log', 'aria-label': 'Log lines, newest last' });
    container.replaceChildren(
      h('div', { class: 'toolbar' },
        h('label', { for: 'log-level' }, 'Level'), level,
        h('label', { for: 'log-plugin' }, 'Module'), plugin,
        h('label', { for: 'log-request' }, 'Request id'), requestId,
        pause, clear, this.state),
      this.detail, this.list);
    this.restart();
  },

  unmount() {
    if (this.abort) this.abort.abort();
    clearTimeout(this.retry);
    this.abort = null;
    this.list = null;
  },

  togglePause(button) {
    this.paused = !this.paused;
    button.textContent = this.paused ? 'Resume' : 'Pause';
    button.setAttribute('aria-pressed', String(this.paused));
    if (!this.paused) {
      const held = this.held;
      this.held = [];
      this.add(held);
    }
    this.showState();
  },

  showState(text) {
    if (!this.state) return;
    const lines = (n) => `${n} line${n === 1 ? '' : 's'}`;
    this.state.textContent = text || (this.paused ? `Paused · ${lines(this.held.length)} new` : `Live · ${lines(this.count)}`);
  },

  restart() {
    if (this.abort) this.abort.abort();
    clearTimeout(this.retry);
    if (!this.list) return;
    this.list.replaceChildren();
    this.count = 0;
    this.held = [];
    this.lastSeq = 0;
    this.follow();
  },

  // One stream at a time: each await below is followed by a check that this call's stream is
  // still the current one (a filter change or leaving the view aborts it and may start another).
  async follow() {
    if (this.abort) this.abort.abort();
    const abort = new AbortController();
    this.abort = abort;
    const stale = () => abort.signal.aborted || this.abort !== abort;
    const q = new URLSearchParams({ level: this.filter.level, backlog: '200' });
    if (this.filter.plugin) q.set('plugin', this.filter.plugin);
    if (this.filter.request_id) q.set('request_id', this.filter.request_id);
    let res;
    try {
      res = await fetch(`/admin/logs/stream?${q}`, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store',
        credentials: 'omit', redirect: 'error', signal: abort.signal });
    } catch (e) {
      if (!stale()) this.again('The host did not answer');
      return;
    }
    if (!res.ok) {
      let message = res.statusText;
      try { message = (await res.json()).error.message; } catch { /* not JSON */ }
      if (stale()) return;
      if (res.status === 401) { signOut('The admin token was refused: sign in again.'); return; }
      if (res.status === 400 || res.status === 404) { this.showState(message); return; }
      this.again(message);
      return;
    }
    if (stale()) {
      abort.abort();
      return;
    }
    this.showState();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || stale()) break;
        buffered += decoder.decode(value, { stream: true });
        let end;
        const lines = [];
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const event = { name: 'message', data: '' };
          for (const field of block.split('\n')) {
            if (field.startsWith('event: ')) event.name = field.slice(7);
            else if (field.startsWith('data: ')) event.data += field.slice(6);
          }
          if (!event.data) continue;  // a comment (": idle")
          const data = JSON.parse(event.data);
          if (event.name === 'open') {
            if (data.newest < this.lastSeq) this.lastSeq = 0;  // the host restarted: numbering began again
          } else if (event.name === 'lost') {
            lines.push({ lost: data.lost });
          } else if (data.seq > this.lastSeq) {
            this.lastSeq = data.seq;
            lines.push(data);
          }
        }
        if (lines.length) this.add(lines);
      }
    } catch (e) {
      // Aborted, or a line that could not be shown: either way this stream is done.
    }
    abort.abort();  // the connection is closed whatever ended the loop
    if (this.abort === abort) this.again('The stream ended');
  },

  again(why) {
    this.showState(`${why}; reconnecting…`);
    clearTimeout(this.retry);
    this.retry = setTimeout(() => { if (this.list) this.follow(); }, 2000);
  },

  add(lines) {
    if (!this.list) return;
    if (this.paused) {
      this.held.push(...lines);
      if (this.held.length > MAX_LOG_LINES) this.held.splice(0, this.held.length - MAX_LOG_LINES);
      this.showState();
      return;
    }
    const box = this.list;
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    append(box, lines.map((l) => this.row(l)));
    this.count += lines.length;
    while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;
    this.showState();
  },

  row(line) {
    if (line.lost !== undefined)
      return h('li', { class: 'lost' }, `${line.lost} lines were logged faster than they could be shown and are not here`);
    const tone = line.level === 'warn' ? 'warn' : line.level === 'error' || line.level === 'critical' ? 'bad' : '';
    return h('li', { class: `lvl-${line.level}`, 'data-logger': line.logger },
      h('time', { datetime: line.ts }, logTime(line.ts)),
      badge(line.level, tone),
      h('span', { class: 'logger' }, line.logger),
      h('span', { class: 'msg' }, line.msg),
      line.request_id ? h('button', { type: 'button', class: 'link mono', 'data-request': line.request_id,
        'aria-label': `Show request ${line.request_id}`, onclick: () => this.showRequest(line.request_id) }, line.request_id) : null);
  },

  async showRequest(id) {
    const panel = this.detail;
    panel.hidden = false;
    panel.replaceChildren(h('p', { class: 'muted' }, `Loading request ${id}…`));
    let lines = [];
    try {
      lines = (await api('GET', `/admin/logs?request_id=${encodeURIComponent(id)}&level=trace`)).lines;
    } catch (e) {
      panel.replaceChildren(h('p', { class: 'error' }, `Could not read request ${id}: ${e.message}`));
      return;
    }
    // Each span line is written when its span ends: it starts duration_us before that. The
    // request comes first, the others in the order they started, drawn on one time scale.
    const spans = lines.filter((l) => l.logger === 'trace' || l.logger === 'access').map((l) => {
      const f = messageFields(l.msg);
      const kind = l.logger === 'access' ? 'request' : f.kind || 'span';
      const what = kind === 'request' ? `${f.method} ${f.target}`
        : kind === 'call' ? `${f.caller} → ${f.target} ${f.method || ''} ${f.path || ''}`
          : kind === 'event' ? `${f.topic}: ${f.publisher} → ${f.subscriber}` : l.msg;
      const us = Number(f.duration_us) || 0;
      const end = logMicros(l.ts);
      return { kind, what, status: f.status || '', us, start: end - us, end };
    }).sort((a, b) => (a.kind === 'request' ? -1 : b.kind === 'request' ? 1 : a.start - b.start));
    const t0 = Math.min(...spans.map((x) => x.start));
    const total = Math.max(1, Math.max(...spans.map((x) => x.end)) - t0);
    const other = lines.filter((l) => l.logger !== 'trace' && l.logger !== 'access');
    panel.replaceChildren();
    append(panel, [
      h('div', { class: 'detail-head' }, h('h2', {}, 'Request ', h('code', {}, id)),
        h('button', { type: 'button', class: 'ghost small', onclick: () => { panel.hidden = true; } }, 'Close')),
      lines.length ? null : h('p', { class: 'muted' }, 'The tail holds no line of this request (it records only while a log stream is open).'),
      spans.length ? h('table', { class: 'spans', id: 'request-spans' },
        h('thead', {}, h('tr', {}, ['Span', 'What', 'Status', 'Duration', 'Timeline'].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, spans.map((x) => h('tr', { 'data-kind': x.kind },
          h('td', {}, badge(x.kind)), h('td', { class: 'mono' }, x.what), h('td', {}, x.status),
          h('td', { class: 'num' }, `${fmt(x.us / 1000, 2)} ms`),
          h('td', { class: 'timeline', 'aria-hidden': 'true' }, h('span', { class: 'bar',
            'data-left': ((x.start - t0) / total).toFixed(4), 'data-width': (x.us / total).toFixed(4) })))))) : null,
      other.length ? h('ol', { class: 'log' }, other.map((l) => h('li', {}, h('time', {}, logTime(l.ts)), badge(l.level),
        h('span', { class: 'logger' }, l.logger), h('span', { class: 'msg' }, l.msg)))) : null]);
    // Placed through the CSSOM (the CSP allows no inline style attribute).
    for (const bar of panel.querySelectorAll('.bar')) {
      bar.style.marginLeft = `${(100 * bar.dataset.left).toFixed(2)}%`;
      bar.style.width = `${Math.max(0.5, 100 * bar.dataset.width).toFixed(2)}%`;
    }
  },
};

const views = { modules: modulesView, map: mapView, events: eventsView, routes: routesView, logs: logsView };

// ---------------------------------------------------------------------------------------------
// Shell: sign-in, navigation, polling.

let current = null;      // the view on screen
let lastData = null;     // its data, drawn again at once on a sort or filter change
let pollTimer = null;
let generation = 0;      // a poll whose view is no longer on screen draws nothing
let mounted = null;      // a live view on screen (it follows a stream instead of polling)

function unmount() {
  if (mounted) mounted.unmount();
  mounted = null;
}

function viewName() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  return views[name] ? name : 'modules';
}

async function refresh(localOnly = false) {
  const name = viewName();
  const view = views[name];
  const content = $('view-content');
  if (!content || view.live) return;
  if (localOnly && lastData && current === name) {
    redraw(content, () => view.draw(lastData));
    return;
  }
  const mine = generation;
  try {
    const data = await view.load();
    if (mine !== generation) return;
    lastData = data;
    redraw(content, () => view.draw(data));
    $('status').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (mine !== generation || e.status === 401) return;
    $('status').textContent = `Could not read the admin API: ${e.message}`;
  }
}

function show() {
  const name = viewName();
  const view = views[name];
  generation += 1;
  current = name;
  lastData = null;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${view.title} · Keel console`;
  const main = $('view');
  unmount();
  main.replaceChildren();
  append(main, [h('h1', {}, view.title), view.toolbar ? view.toolbar() : null,
    h('div', { id: 'view-content' }, h('p', { class: 'muted' }, 'Loading…'))]);
  clearInterval(pollTimer);
  if (view.live) {
    $('status').textContent = '';
    mounted = view;
    view.mount($('view-content'));
    return;
  }
  refresh();
  pollTimer = setInterval(() => { if (!document.hidden && !$('confirm').open && !$('deploy').open) refresh(); }, POLL_MS);
}

function signOut(message) {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(pollTimer);
  unmount();
  generation += 1;
  $('shell').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

async function signIn(candidate) {
  const error = $('login-error');
  error.hidden = true;
  try {
    await api('GET', '/admin/plugins', { tokenOverride: candidate });
  } catch (e) {
    error.hidden = false;
    error.textContent = e.status === 401 ? 'That token is not accepted.'
      : e.status === 429 ? `Too many failed attempts from this address: try again in ${e.retryAfter || 'a few'} seconds.`
        : e.status === 404 ? 'The admin API is off on this host: set [admin] token.'
          : `Cannot reach the admin API: ${e.message}`;
    return false;
  }
  token = candidate;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('login').hidden = true;
  $('shell').hidden = false;
  $('host-info').textContent = location.host;
  show();
  return true;
}

function start() {
  applyTheme();
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', applyTheme);
  $('theme').addEventListener('click', toggleTheme);
  $('signout').addEventListener('click', () => signOut('Signed out.'));
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (value) signIn(value);
  });
  window.addEventListener('hashchange', () => { if (token) show(); });
  // A link may carry the token in its fragment (never sent to the server): taken, then removed
  // from the address bar and the history.
  const fromLink = location.hash.match(/^#token=([^&]+)/);
  if (fromLink) {
    history.replaceState(null, '', `${location.pathname}#/modules`);
    let candidate = '';
    try {
      candidate = decodeURIComponent(fromLink[1]);
    } catch {
      candidate = '';
    }
    if (candidate) signIn(candidate);
    else signOut('The link holds no valid token: sign in.');
  } else if (token) {
    signIn(token);
  } else {
    signOut('');
  }
}

start();
