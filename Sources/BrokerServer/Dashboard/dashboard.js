// The broker's dashboard: live figures from $sys/broker/stats, the operator API
// (/api/connections, /api/topics) and the client API (/api/retained, publish, tail) — all with
// the credential the operator gives, kept in sessionStorage for this tab only.
import { BrokerClient } from '/dashboard/broker-client.js';

const CREDENTIAL_KEY = 'broker.dashboard.credential';
const HISTORY_POINTS = 120;
const TAIL_LINES = 200;

const $ = (id) => document.getElementById(id);
let client = null;
let tail = null;
let topicsCursor = null;
let lastStatsAt = 0;
const timers = [];

// ---- credentials and the HTTP API --------------------------------------------------------------

const credential = () => sessionStorage.getItem(CREDENTIAL_KEY);

async function api(path, options = {}) {
  // An open broker (no credentials configured) takes none: the credential may be empty.
  const headers = Object.assign(credential() ? { Authorization: `Bearer ${credential()}` } : {}, options.headers);
  const response = await fetch(path, Object.assign({}, options, { headers, cache: 'no-store' }));
  if (response.status === 401) {
    signOut('The credential was refused.');
    throw new Error('unauthorized');
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new Error(body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`);
  }
  return response.status === 204 ? null : response.json();
}

function signIn(value) {
  sessionStorage.setItem(CREDENTIAL_KEY, value);
  start();
}

function signOut(reason) {
  sessionStorage.removeItem(CREDENTIAL_KEY);
  if (client) client.close();
  client = null;
  tail = null;
  while (timers.length) clearInterval(timers.pop());
  $('main').hidden = true;
  $('sign-in').hidden = false;
  $('sign-out').hidden = true;
  $('state').textContent = 'signed out';
  $('sign-in-error').textContent = reason || '';
}

// ---- start -------------------------------------------------------------------------------------

async function start() {
  try {
    await api('/api/stats'); // checks the credential before anything else
  } catch (e) {
    if (e.message !== 'unauthorized') $('sign-in-error').textContent = e.message;
    return;
  }
  $('sign-in').hidden = true;
  $('main').hidden = false;
  $('sign-out').hidden = false;
  client = new BrokerClient('/ws', { token: credential() || undefined });
  client.on('state', (state) => { $('state').textContent = state; });
  client.on('error', (error) => console.warn('broker:', error.code, error.message));
  client.subscribe('$sys/broker/stats', (msg) => showStats(msg.data), { history: 0 });
  // Without $sys/broker/stats (sys.stats-interval 0, or no permission) poll /api/stats instead.
  timers.push(setInterval(() => {
    if (Date.now() - lastStatsAt > 3000) api('/api/stats').then((stats) => showStats(stats, true)).catch(() => {});
  }, 2000));
  timers.push(setInterval(loadConnections, 5000));
  loadConnections();
  loadTopics(false);
}

// ---- figures and charts ------------------------------------------------------------------------

const history = { at: [], connections: [], subscriptions: [], messagesIn: [], messagesOut: [], bytesIn: [], bytesOut: [] };
let previousPoll = null;

function showStats(stats, polled = false) {
  if (!polled) lastStatsAt = Date.now();
  let rates = stats.rates;
  if (!rates && previousPoll) {
    // Polled figures carry no rates: derive them from the previous poll.
    const seconds = Math.max(0.001, (Date.now() - previousPoll.at) / 1000);
    const rate = (key) => Math.max(0, stats[key] - previousPoll.stats[key]) / seconds;
    rates = { messagesIn: rate('messagesIn'), messagesOut: rate('messagesOut'), bytesIn: rate('bytesIn'), bytesOut: rate('bytesOut') };
  }
  if (polled) previousPoll = { at: Date.now(), stats };
  const journal = stats.journal || {};
  $('tile-connections').textContent = stats.connections;
  $('tile-subscriptions').textContent = stats.subscriptions;
  $('tile-topics').textContent = stats.topics;
  $('tile-journal-messages').textContent = journal.messages;
  $('tile-journal-bytes').textContent = formatBytes(journal.bytes);
  $('tile-offsets').textContent = `${journal.firstOffset}–${journal.lastOffset}`;
  $('tile-uptime').textContent = formatDuration(stats.uptimeSeconds);
  if (!rates) return;
  push('connections', stats.connections);
  push('subscriptions', stats.subscriptions);
  for (const key of ['messagesIn', 'messagesOut', 'bytesIn', 'bytesOut']) push(key, rates[key]);
  drawChart($('chart-clients'), [history.connections, history.subscriptions], formatCount);
  drawChart($('chart-messages'), [history.messagesIn, history.messagesOut], formatCount);
  drawChart($('chart-bytes'), [history.bytesIn, history.bytesOut], formatBytes);
}

function push(key, value) {
  const series = history[key];
  series.push(Number(value) || 0);
  if (series.length > HISTORY_POINTS) series.shift();
}

/** Line chart of `series` (the first drawn in the "in" colour, the second in "out"). */
function drawChart(canvas, series, format) {
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  const style = getComputedStyle(document.documentElement);
  const colours = [style.getPropertyValue('--in'), style.getPropertyValue('--out')];
  context.clearRect(0, 0, width, height);
  const max = Math.max(1, ...series.flat());
  const top = 16;
  const y = (value) => height - 4 - (value / max) * (height - top - 4);
  const x = (index) => (index / (HISTORY_POINTS - 1)) * width;
  series.forEach((points, n) => {
    context.strokeStyle = colours[n];
    context.lineWidth = 1.5;
    context.beginPath();
    points.forEach((value, index) => {
      const px = x(HISTORY_POINTS - points.length + index);
      if (index === 0) context.moveTo(px, y(value)); else context.lineTo(px, y(value));
    });
    context.stroke();
  });
  context.fillStyle = style.getPropertyValue('--muted');
  context.font = '11px system-ui, sans-serif';
  const latest = series.map((points) => format(points[points.length - 1] || 0)).join(' / ');
  context.fillText(`max ${format(max)}   now ${latest}`, 4, 11);
}

// ---- connections -------------------------------------------------------------------------------

async function loadConnections() {
  let answer;
  try { answer = await api('/api/connections?limit=500'); } catch (e) { $('connections-note').textContent = e.message; return; }
  const rows = answer.connections.map((c) => row([
    c.id, c.remoteAddress, c.client ?? '—', c.subscriptions.join(' '),
    `${formatCount(c.messagesIn)} · ${formatBytes(c.bytesIn)}`,
    `${formatCount(c.messagesOut)} · ${formatBytes(c.bytesOut)}`,
    formatBytes(c.queuedBytes), new Date(c.connectedAt).toLocaleString(), disconnectButton(c.id),
  ]));
  $('connections').replaceChildren(...rows);
  $('connections-note').textContent = answer.total > answer.connections.length
    ? `The oldest ${answer.connections.length} of ${answer.total} connections.` : `${answer.total} connections.`;
}

function disconnectButton(id) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'danger';
  button.textContent = 'Disconnect';
  button.addEventListener('click', async () => {
    if (!confirm(`Disconnect ${id}?`)) return;
    try { await api(`/api/connections/${encodeURIComponent(id)}`, { method: 'DELETE' }); } catch (e) { alert(e.message); }
    loadConnections();
  });
  return button;
}

// ---- topics and retained messages --------------------------------------------------------------

async function loadTopics(more) {
  const params = new URLSearchParams({ prefix: $('topics-prefix').value, limit: '100' });
  if (more && topicsCursor) params.set('after', topicsCursor);
  let answer;
  try { answer = await api(`/api/topics?${params}`); } catch (e) { return; }
  const rows = answer.topics.map((t) => {
    const tr = row([t.topic, t.retained, t.lastOffset, t.subscriptions]);
    tr.className = 'clickable';
    tr.addEventListener('click', () => loadRetained(t.topic));
    return tr;
  });
  if (more) $('topics').append(...rows); else $('topics').replaceChildren(...rows);
  topicsCursor = answer.next;
  $('topics-more').hidden = answer.next === null;
  $('filters').replaceChildren(...answer.filters.map((f) => row([f.filter, f.subscribers])));
}

async function loadRetained(topic) {
  $('retained-topic').textContent = topic;
  const params = new URLSearchParams({ topic, limit: '50' });
  let answer;
  try { answer = await api(`/api/retained?${params}`); } catch (e) { $('retained').replaceChildren(line(e.message)); return; }
  const items = answer.messages.slice().reverse().map((m) =>
    line(m.binary !== undefined ? `(binary, base64) ${m.binary}` : JSON.stringify(m.data, null, 1),
      `#${m.offset} · ${new Date(m.timestamp).toLocaleString()}`));
  $('retained').replaceChildren(...items);
}

// ---- live tail and publish ---------------------------------------------------------------------

function startTail(filter) {
  if (tail) tail.unsubscribe();
  $('tail').replaceChildren();
  tail = client.subscribe(filter, (msg) => {
    const text = msg.binary ? `(binary, ${msg.binary.length} bytes)` : JSON.stringify(msg.data);
    const meta = `${new Date().toLocaleTimeString()} ${msg.topic}${msg.offset !== undefined ? ` #${msg.offset}` : ''}${msg.replay ? ' (replay)' : ''}`;
    const list = $('tail');
    list.prepend(line(text, meta));
    while (list.children.length > TAIL_LINES) list.lastChild.remove();
  }, { history: 0 });
  tail.ready.catch((e) => $('tail').replaceChildren(line(`${e.code}: ${e.message}`)));
  $('tail-stop').disabled = false;
}

function stopTail() {
  if (tail) tail.unsubscribe();
  tail = null;
  $('tail-stop').disabled = true;
}

async function publish() {
  let data;
  try { data = JSON.parse($('publish-data').value); } catch (e) { $('publish-result').textContent = `Not JSON: ${e.message}`; return; }
  try {
    const ack = await client.publish($('publish-topic').value, data, { retain: $('publish-retain').checked });
    $('publish-result').textContent = ack.offset !== undefined ? `Stored at offset ${ack.offset}.` : 'Published.';
  } catch (e) {
    $('publish-result').textContent = `${e.code}: ${e.message}`;
  }
}

// ---- DOM helpers and formatting ----------------------------------------------------------------

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell); else td.textContent = String(cell);
    tr.append(td);
  }
  return tr;
}

function line(text, meta) {
  const li = document.createElement('li');
  if (meta) {
    const span = document.createElement('div');
    span.className = 'meta';
    span.textContent = meta;
    li.append(span);
  }
  li.append(document.createTextNode(text));
  return li;
}

function formatCount(value) {
  const n = Number(value) || 0;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function formatBytes(value) {
  const n = Number(value) || 0;
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

function formatDuration(seconds) {
  const s = Number(seconds) || 0;
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

// ---- wiring ------------------------------------------------------------------------------------

$('sign-in-form').addEventListener('submit', (event) => { event.preventDefault(); signIn($('credential').value.trim()); });
$('sign-out').addEventListener('click', () => signOut());
$('connections-refresh').addEventListener('click', loadConnections);
$('topics-form').addEventListener('submit', (event) => { event.preventDefault(); loadTopics(false); });
$('topics-more').addEventListener('click', () => loadTopics(true));
$('tail-form').addEventListener('submit', (event) => { event.preventDefault(); startTail($('tail-filter').value.trim()); });
$('tail-stop').addEventListener('click', stopTail);
$('publish-form').addEventListener('submit', (event) => { event.preventDefault(); publish(); });

if (credential() !== null) start();
