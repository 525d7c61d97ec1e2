// The eventline sample's page. Every value from the server is put into the
// page as text (textContent and text nodes, never parsed as HTML), so user data cannot become
// markup.
'use strict';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const $ = (sel) => document.querySelector(sel);
function notice(msg, bad) {
  const n = $('#notice');
  n.textContent = msg;
  n.className = bad ? 'notice bad' : 'notice';
}
const money = (cents) => (Number(cents) / 100).toFixed(2);
const posNum = (p) => { const n = Number(String(p).split('/')[0]); return Number.isFinite(n) ? n : 0; };
function key() {
  const b = new Uint8Array(12); crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// api sends a request and returns [status, body]; errors are shown as text.
async function api(method, path, body, headers) {
  const opts = { method, headers: Object.assign({}, headers || {}) };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try { res = await fetch(path, opts); } catch (e) { return [0, { error: 'network error: ' + e.message, code: 'network' }]; }
  let data = {};
  try { data = await res.json(); } catch (e) { data = {}; }
  return [res.status, data];
}

// ---- the shop -------------------------------------------------------------

// recent keeps the latest tail entries: the saga may run before the
// checkout's answer arrives, and its records must not be missed.
const shop = { customer: null, cart: null, order: null, orderPos: null, seen: new Set(), recent: [] };

// command runs a command, then reads the model with ?after= and records when
// the read model reached the command's position.
async function command(label, method, path, body, readPath, headers) {
  const [status, data] = await api(method, path, body, headers);
  if (status < 200 || status > 299) {
    notice(label + ' failed: ' + (data.error || ('HTTP ' + status)) + (data.code ? ' (' + data.code + ')' : ''), true);
    return null;
  }
  const row = el('tr', {}, el('td', {}, label), el('td', {}, data.position || '–'), el('td', { class: 'pending' }, 'waiting…'));
  $('#writes tbody').prepend(row);
  const t0 = performance.now();
  const rp = typeof readPath === 'function' ? readPath(data) : readPath;
  const [rs, model] = await api('GET', rp + (data.position ? '?after=' + encodeURIComponent(data.position) : ''));
  const ms = Math.round(performance.now() - t0);
  row.lastChild.className = rs === 200 ? 'ok' : 'bad';
  row.lastChild.textContent = rs === 200 ? 'after ' + ms + ' ms' : 'not yet (' + (model.code || rs) + ')';
  notice(label + ': written at position ' + (data.position || '?') + '.');
  return { data, model: rs === 200 ? model : null };
}

function renderCustomer(c) {
  const dl = $('#customer-view');
  dl.replaceChildren(el('dt', {}, 'Customer'), el('dd', {}, c.customer_id),
    el('dt', {}, 'Credit limit'), el('dd', {}, money(c.credit_limit_cents)),
    el('dt', {}, 'Reserved'), el('dd', { id: 'reserved' }, money(c.reserved_cents)));
}

function renderCart(c) {
  if (!c) return;
  $('#cart-id').textContent = c.cart_id;
  $('#cart-status').textContent = c.status;
  const tb = $('#cart-items tbody');
  tb.replaceChildren(...(c.items || []).map((it) => el('tr', {},
    el('td', {}, it.product_id), el('td', {}, it.quantity), el('td', {}, money(it.unit_price_cents)),
    el('td', {}, el('button', { type: 'button', 'aria-label': 'Remove ' + it.product_id, onclick: () => removeItem(it.product_id) }, 'Remove')))));
  $('#cart-total').textContent = money(c.total_cents);
  $('#checkout').disabled = c.status !== 'open' || !(c.items || []).length;
}

function renderOrder(o) {
  if (!o) return;
  $('#order-id').textContent = o.order_id;
  $('#order-status').textContent = o.status;
  $('#order-status').className = 'status-' + o.status;
  $('#order-reason').textContent = o.reason ? 'Reason: ' + o.reason : '';
}

async function refreshCustomer(after) {
  if (!shop.customer) return;
  const [s, c] = await api('GET', '/customers/' + encodeURIComponent(shop.customer) + '/carts' + (after ? '?after=' + encodeURIComponent(after) : ''));
  if (s === 200) renderCustomer(c);
}

async function register(ev) {
  ev.preventDefault();
  const id = $('#customer-id').value.trim();
  const limit = Number($('#credit-limit').value);
  const r = await command('register ' + id, 'POST', '/customers', { customer_id: id, credit_limit_cents: limit },
    '/customers/' + encodeURIComponent(id) + '/carts');
  if (r) { shop.customer = id; if (r.model) renderCustomer(r.model); }
}

async function openCart() {
  const id = $('#customer-id').value.trim();
  shop.customer = id;
  const r = await command('open cart', 'POST', '/carts', { customer_id: id },
    (d) => '/carts/' + encodeURIComponent(d.cart_id), { 'Idempotency-Key': key() });
  if (r) {
    shop.cart = r.data.cart_id; shop.order = null;
    renderCart(r.model);
    $('#order-id').textContent = 'none'; $('#order-status').textContent = '–'; $('#order-reason').textContent = '';
    $('#saga').replaceChildren();
  }
}

async function addItem(ev) {
  ev.preventDefault();
  if (!shop.cart) { notice('Open a cart first.', true); return; }
  const pid = $('#product-id').value;
  const r = await command('add ' + pid, 'POST', '/carts/' + encodeURIComponent(shop.cart) + '/items',
    { product_id: pid, quantity: Number($('#quantity').value), unit_price_cents: Number($('#unit-price').value) },
    '/carts/' + encodeURIComponent(shop.cart));
  if (r) renderCart(r.model);
}

async function removeItem(pid) {
  const r = await command('remove ' + pid, 'DELETE', '/carts/' + encodeURIComponent(shop.cart) + '/items/' + encodeURIComponent(pid),
    undefined, '/carts/' + encodeURIComponent(shop.cart));
  if (r) renderCart(r.model);
}

async function checkout() {
  if (!shop.cart) return;
  const cart = shop.cart;
  const r = await command('check out', 'POST', '/carts/' + encodeURIComponent(cart) + '/checkout', undefined,
    (d) => '/orders/' + encodeURIComponent(d.order_id), { 'Idempotency-Key': key() });
  if (!r) return;
  shop.order = r.data.order_id;
  shop.orderPos = r.data.position;
  $('#saga').replaceChildren(el('li', {}, 'cart checked out at position ' + r.data.position + '; waiting for the saga…'));
  renderOrder(r.model);
  refreshCart(r.data.position);
  onShopTail(shop.recent);
  followOrder(shop.order);
}

async function refreshCart(after) {
  if (!shop.cart) return;
  const [s, c] = await api('GET', '/carts/' + encodeURIComponent(shop.cart) + (after ? '?after=' + encodeURIComponent(after) : ''));
  if (s === 200) renderCart(c);
}

// followOrder polls the order while it is pending, in case the live tail is
// behind or disconnected; the tail usually brings the news first.
async function followOrder(id) {
  for (let i = 0; i < 60 && shop.order === id; i++) {
    const [s, o] = await api('GET', '/orders/' + encodeURIComponent(id));
    if (s === 200) {
      renderOrder(o);
      if (o.status !== 'pending') { refreshCart(); refreshCustomer(); return; }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// onShopTail follows the saga: records of the current order's, cart's and
// customer's streams, as the eventlog projection applies them.
function onShopTail(entries) {
  if (!shop.order) return;
  const streams = ['order-' + shop.order, 'cart-' + shop.cart, 'customer-' + shop.customer];
  for (const e of entries) {
    if (!streams.includes(e.stream) || shop.seen.has(e.id)) continue;
    if (posNum(e.position) < posNum(shop.orderPos)) continue;
    shop.seen.add(e.id);
    $('#saga').append(el('li', {}, el('code', {}, e.type), ' on ', e.stream, ' at position ', e.position));
    if (e.stream === 'order-' + shop.order && (e.type === 'order.confirmed' || e.type === 'order.rejected')) {
      api('GET', '/orders/' + encodeURIComponent(shop.order) + '?after=' + encodeURIComponent(e.position)).then(([s, o]) => { if (s === 200) renderOrder(o); });
      refreshCustomer(e.position);
    }
    if (e.stream === 'cart-' + shop.cart && e.type === 'cart.reopened') {
      refreshCart(e.position);
      notice('The order was rejected; the cart was reopened (compensation).');
    }
  }
}

function startShop() {
  $('#customer-form').addEventListener('submit', register);
  $('#open-cart').addEventListener('click', openCart);
  $('#item-form').addEventListener('submit', addItem);
  $('#checkout').addEventListener('click', checkout);
  $('#checkout').disabled = true;
  api('GET', '/web/config').then(([st, c]) => {
    if (st === 200 && !c.commands) {
      notice('This query API has no command API configured (--command-url): the shop is read-only here.', true);
      for (const b of document.querySelectorAll('main button')) b.disabled = true;
    }
  });
  const es = new EventSource('/web/events?status=0');
  es.addEventListener('tail', (m) => {
    const entries = JSON.parse(m.data).entries || [];
    shop.recent = shop.recent.concat(entries).slice(-500);
    onShopTail(entries);
  });
}

// ---- the operations view ---------------------------------------------------

const ops = { es: null, maxLag: 0, token: '', admin: false };

function fmt(n, digits) {
  if (n === undefined || n === null || n < 0) return '–';
  return Number(n).toFixed(digits);
}

// older reports whether a row's build is older than its projection's active
// build (a replaced build, being removed or left stopped).
const older = (r) => r.version < r.active_version || (r.version === r.active_version && r.generation < r.active_generation);

function renderStatus(s) {
  $('#conn').textContent = s.error ? 'degraded: ' + s.error : 'live';
  $('#conn').className = s.error ? 'badge bad' : 'badge ok';
  $('#head').textContent = s.head;
  $('#head-from').textContent = s.head_from === 'store' ? '(from the event store)' : '(as the runners last wrote it)';
  $('#updated').textContent = new Date(s.at).toLocaleTimeString();
  const rows = s.rows.map((r) => {
    if (r.lag_events > ops.maxLag) ops.maxLag = r.lag_events;
    const dead = r.dead_letters > 0
      ? el('button', { type: 'button', onclick: () => showDead(r.name, r.build) }, String(r.dead_letters))
      : '0';
    return el('tr', { 'data-projection': r.name, 'data-build': r.build, 'data-active': String(r.active), class: r.active ? 'active' : '' },
      el('th', { scope: 'row' }, r.name), el('td', {}, r.build || '–'),
      el('td', {}, r.active ? 'active' : !r.build ? '–' : older(r) ? 'replaced' : 'building'),
      el('td', { class: 'state-' + r.state }, r.state),
      el('td', { class: 'checkpoint' }, r.checkpoint || '–'),
      el('td', { class: 'lag' }, r.lag_events < 0 ? '–' : String(r.lag_events)),
      el('td', {}, fmt(r.lag_seconds, 2)), el('td', {}, fmt(r.rate, 0)), el('td', {}, r.eta < 0 ? '–' : fmt(r.eta, 1) + ' s'),
      el('td', { class: 'holder' }, r.holder || '–'), el('td', {}, dead), el('td', {}, r.error || ''));
  });
  $('#projections tbody').replaceChildren(...rows);
  $('#max-lag').textContent = String(ops.maxLag);
  renderRebuilds(s.rebuilds || []);
}

function renderRebuilds(jobs) {
  $('#rebuilds').replaceChildren(...jobs.slice().reverse().map((j) => {
    j.samples = j.samples || [];
    const last = j.samples[j.samples.length - 1];
    const pct = last && last.percent >= 0 ? last.percent : 0;
    const state = j.error ? 'failed: ' + j.error : j.done ? 'done: build ' + j.build + ' is active' : (last ? last.phase : 'starting');
    return el('article', { class: 'job', 'data-job': String(j.id), 'data-done': String(j.done) },
      el('h3', {}, 'Rebuild #' + j.id + ' of ' + j.projection + ': ' + (j.previous || '–') + ' → ' + (j.build || '…')),
      el('p', {}, el('label', { for: 'job-' + j.id }, 'Progress '),
        el('progress', { id: 'job-' + j.id, max: '100', value: String(pct) }, pct.toFixed(0) + '%'),
        ' ' + pct.toFixed(0) + '% — ', el('span', { class: 'job-state' }, state)),
      el('ol', { class: 'log samples' }, ...j.samples.map((x) => el('li', {},
        x.phase + ': ' + x.checkpoint + ' / ' + x.head + (x.percent >= 0 ? ' (' + x.percent.toFixed(0) + '%)' : '') +
        (x.rate >= 0 ? ', ' + x.rate.toFixed(0) + ' ev/s' : '') + (x.eta >= 0 ? ', ETA ' + x.eta.toFixed(1) + ' s' : '')))));
  }));
}

function renderTail(t) {
  const tb = $('#tail tbody');
  if (t.reset) tb.replaceChildren();
  if (t.error) notice('Live tail: ' + t.error, true);
  for (const e of t.entries) {
    tb.prepend(el('tr', {}, el('td', {}, e.position), el('td', {}, e.at ? new Date(e.at).toLocaleTimeString() : ''),
      el('td', {}, e.stream), el('td', {}, e.version), el('td', {}, e.type), el('td', { class: 'data' }, e.data)));
  }
  while (tb.children.length > 200) tb.lastChild.remove();
}

function connectOps() {
  if (ops.es) ops.es.close();
  const stream = $('#tail-stream').value, type = $('#tail-type').value;
  const q = new URLSearchParams();
  if (stream) q.set('stream', stream);
  if (type) q.set('type', type);
  $('#tail-filter').textContent = (stream || type)
    ? 'Showing records whose stream starts with “' + stream + '” and type starts with “' + type + '”.'
    : 'Showing every record.';
  ops.es = new EventSource('/web/events?' + q.toString());
  ops.es.addEventListener('status', (m) => renderStatus(JSON.parse(m.data)));
  ops.es.addEventListener('tail', (m) => renderTail(JSON.parse(m.data)));
  ops.es.onerror = () => { $('#conn').textContent = 'reconnecting'; $('#conn').className = 'badge bad'; };
}

async function showDead(name, build) {
  const [s, d] = await api('GET', '/web/deadletters?projection=' + encodeURIComponent(name) + '&build=' + encodeURIComponent(build));
  if (s !== 200) { notice('Dead letters: ' + (d.error || s), true); return; }
  const retry = (e) => ops.admin
    ? [' ', el('button', { type: 'button', class: 'retry', onclick: () => retryDead(name, build, e.position) }, 'Retry')]
    : [];
  $('#dead-letters').replaceChildren(
    ...d.entries.map((e) => el('li', {},
      name + ' ' + build + ': ', el('code', {}, e.type), ' at ' + e.position + ' on ' + e.stream_id + ': ' + e.error, ...retry(e))),
    ...(d.retrying || []).map((e) => el('li', { class: 'pending' },
      name + ' ' + build + ': ', el('code', {}, e.type), ' at ' + e.position + ' on ' + e.stream_id + ': retry pending')));
}

// retryDead asks the projection's lease holder to apply one dead letter
// again; the listing shows it pending until the runner has applied it, or
// back with the new error.
async function retryDead(name, build, position) {
  const token = $('#admin-token').value;
  if (!token) { notice('Enter the admin token (under Rebuilds) to retry a dead letter.', true); return; }
  const [s, d] = await api('POST', '/web/deadletters/retry', { projection: name, build, position }, { Authorization: 'Bearer ' + token });
  if (s === 202) notice('Retry of ' + name + ' ' + build + ' at ' + position + ' queued.');
  else notice('Retry refused: ' + (d.error || ('HTTP ' + s)) + (d.code ? ' (' + d.code + ')' : ''), true);
  showDead(name, build);
}

async function startRebuild(ev) {
  ev.preventDefault();
  const name = $('#rebuild-projection').value;
  const [s, d] = await api('POST', '/web/rebuild', { projection: name }, { Authorization: 'Bearer ' + $('#admin-token').value });
  if (s === 202 && d.requested) notice('Rebuild of ' + name + ' requested: a projector runs it; its new build shows in the table above.');
  else if (s === 202) notice('Rebuild #' + d.id + ' of ' + name + ' started.');
  else notice('Rebuild refused: ' + (d.error || ('HTTP ' + s)) + (d.code ? ' (' + d.code + ')' : ''), true);
}

async function startOps() {
  $('#tail-form').addEventListener('submit', (ev) => { ev.preventDefault(); $('#tail').querySelector('tbody').replaceChildren(); connectOps(); });
  connectOps();
  const [s, c] = await api('GET', '/web/config');
  if (s !== 200) return;
  if (c.admin) {
    ops.admin = true;
    $('#admin-off').hidden = true;
    $('#rebuild-form').hidden = false;
    $('#rebuild-projection').replaceChildren(...c.projections.map((p) => el('option', { value: p }, p)));
    $('#rebuild-form').addEventListener('submit', startRebuild);
    if (!c.rebuild) {
      $('#rebuild-form').append(el('p', {}, 'This process has no event store: a projector runs the rebuild; follow its new build in the table above.'));
    }
  }
}

document.addEventListener('DOMContentLoaded', () => {
  if (document.body.dataset.page === 'ops') startOps(); else startShop();
});
