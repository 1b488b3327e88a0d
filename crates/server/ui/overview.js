// The overview of all channels and the page of one channel, both fed by the live data: the
// monitor's history (`GET /api/monitor?seconds=600`) to seed the charts, then one snapshot a
// second from the server-sent event stream (`GET /api/stream`). A server without the monitor
// is polled instead (`GET /api/channels` every second), with the counters but no ACK times.

import { api, can, query, ApiError } from './api.js';
import { h, fill, table, row, facts, num, ms, age, when, toast } from './dom.js';
import { Chart } from './chart.js';

/** How much history the charts show. */
const KEEP_MS = 600_000;
/** Window of the live rates and ACK times. */
const RATE_MS = 5_000;
const ERROR_WINDOW_MS = 60_000;

// ---------------------------------------------------------------------------------------
// Live snapshots
// ---------------------------------------------------------------------------------------

class Live {
  constructor() {
    this.history = [];
    this.listeners = new Set();
    this.mode = 'connecting';
    this.timer = null;
    this.stream = null;
    this.generation = 0;
  }

  subscribe(f) {
    this.listeners.add(f);
    if (this.listeners.size === 1) this.start();
    else if (this.history.length) f(this);
    return () => {
      this.listeners.delete(f);
      if (this.listeners.size === 0) this.stop();
    };
  }

  async start() {
    const gen = ++this.generation;
    try {
      const seed = await api(`/api/monitor${query({ seconds: KEEP_MS / 1000 })}`);
      if (gen !== this.generation) return;
      this.history = [];
      for (const snap of seed.history || []) this.push(snap, false);
      if (seed.now) this.push(seed.now, false);
      this.mode = 'live';
      this.notify();
      this.openStream(gen);
    } catch (e) {
      if (gen !== this.generation) return;
      if (e instanceof ApiError && e.status === 401) return;
      this.poll(gen);
    }
  }

  openStream(gen) {
    const es = new EventSource('/api/stream');
    this.stream = es;
    es.addEventListener('snapshot', (ev) => {
      if (gen !== this.generation) return;
      try { this.push(JSON.parse(ev.data)); } catch { /* a partial event: the next one comes in a second */ }
    });
    es.addEventListener('error', () => {
      // EventSource reconnects by itself unless the server refused the stream.
      if (es.readyState === EventSource.CLOSED && gen === this.generation) {
        this.stream = null;
        this.poll(gen);
      }
    });
  }

  async poll(gen) {
    this.mode = 'polling';
    while (gen === this.generation) {
      try {
        const list = await api('/api/channels');
        if (gen !== this.generation) return;
        this.push(fromChannels(list));
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return;
      }
      await new Promise((resolve) => { this.timer = setTimeout(resolve, 1000); });
    }
  }

  stop() {
    this.generation += 1;
    clearTimeout(this.timer);
    if (this.stream) this.stream.close();
    this.stream = null;
    this.mode = 'connecting';
  }

  push(snap, notify = true) {
    const last = this.history[this.history.length - 1];
    if (last && snap.at <= last.at) return;
    this.history.push(snap);
    const oldest = snap.at - KEEP_MS;
    while (this.history.length && this.history[0].at < oldest) this.history.shift();
    if (notify) this.notify();
  }

  notify() {
    for (const f of this.listeners) f(this);
  }

  get now() { return this.history[this.history.length - 1]; }

  /** The newest snapshot at least `spanMs` older than snapshot `i` (or the oldest). */
  before(i, spanMs) {
    const at = this.history[i].at - spanMs;
    for (let j = i - 1; j >= 0; j -= 1) if (this.history[j].at <= at) return this.history[j];
    return i > 0 ? this.history[0] : null;
  }
}

/** A snapshot made of `GET /api/channels` (no ACK times, no delivery counts). */
function fromChannels(list) {
  return {
    at: Date.now(),
    channels: list.channels.map((c) => ({
      name: c.name,
      running: c.running,
      source: c.source,
      ...c.stats,
      connections_open: null,
      last_received: null,
      ack: null,
      destinations: c.destinations.map((d) => ({
        name: d.name,
        queue: d.queue,
        queue_depth: d.queue_depth,
        oldest_age_ms: d.oldest_queued_age_ms,
        failed: d.failed,
        ack: null,
      })),
    })),
  };
}

export const live = new Live();

// ---------------------------------------------------------------------------------------
// Figures from snapshots
// ---------------------------------------------------------------------------------------

function channelOf(snap, name) {
  return snap && snap.channels.find((c) => c.name === name);
}

function errorsOf(c) {
  return (c.rejected || 0) + (c.errored || 0) + (c.store_failures || 0);
}

function queueOf(c) {
  return c.destinations.reduce((sum, d) => sum + (d.queue_depth || 0), 0);
}

function oldestOf(c) {
  const ages = c.destinations.map((d) => d.oldest_age_ms).filter((a) => a !== null && a !== undefined);
  return ages.length ? Math.max(...ages) : null;
}

/** `now - then` of a histogram (per-bucket counts). */
export function histogramSince(now, then) {
  if (!now) return null;
  if (!then || !then.counts || then.counts.length !== now.counts.length) return now;
  return {
    bounds_ms: now.bounds_ms,
    counts: now.counts.map((c, i) => Math.max(0, c - then.counts[i])),
    count: Math.max(0, now.count - then.count),
    sum_ms: now.sum_ms - then.sum_ms,
  };
}

/** The `q` quantile of a histogram, interpolated inside its bucket; null when empty. */
export function quantile(hist, q) {
  if (!hist || !hist.count) return null;
  const target = q * hist.count;
  const bounds = hist.bounds_ms;
  let seen = 0;
  for (let i = 0; i < hist.counts.length; i += 1) {
    const c = hist.counts[i];
    if (c > 0 && seen + c >= target) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * ((target - seen) / c);
    }
    seen += c;
  }
  return bounds[bounds.length - 1];
}

/** The figures of channel `name` at snapshot `i`. */
function figures(i, name) {
  const snap = live.history[i];
  const c = channelOf(snap, name);
  if (!c) return null;
  const recentSnap = live.before(i, RATE_MS);
  const minuteSnap = live.before(i, ERROR_WINDOW_MS);
  const recent = channelOf(recentSnap, name);
  const minute = channelOf(minuteSnap, name);
  const perSec = (pick) => (recent && snap.at > recentSnap.at
    ? Math.max(0, pick(c) - pick(recent)) / ((snap.at - recentSnap.at) / 1000)
    : null);
  let errorPct = null;
  if (minute) {
    const got = c.received - minute.received;
    errorPct = got > 0 ? (100 * (errorsOf(c) - errorsOf(minute))) / got : 0;
  }
  return {
    c,
    throughput: perSec((x) => x.received),
    errorsPerSec: perSec(errorsOf),
    errorPct,
    queue: queueOf(c),
    oldest: oldestOf(c),
    p95: c.ack ? quantile(histogramSince(c.ack, minute && minute.ack), 0.95) : null,
  };
}

function seriesOf(names, pick) {
  return names.map((name) => ({
    name,
    points: live.history.map((snap, i) => {
      const f = figures(i, name);
      return [snap.at, f ? pick(f) : null];
    }),
  }));
}

function modeNote() {
  if (live.mode === 'polling') return 'polling every second (the live stream is not available: no ACK times)';
  if (live.mode === 'live') return 'live';
  return 'connecting…';
}

// ---------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------

const COLUMNS = [
  ['Channel', null], ['State', null], ['Source', null], ['msg/s', 'num'], ['Error %', 'num'],
  ['Queue', 'num'], ['Oldest queued', 'num'], ['p95 ACK', 'num'], ['Received', 'num'],
  ['Accepted', 'num'], ['Rejected', 'num'], ['Errored', 'num'], ['Last received', null],
];

export function overview(main) {
  const status = h('p', { id: 'live-status', class: 'muted', 'aria-live': 'polite', 'aria-atomic': 'true' }, 'Connecting…');
  const body = h('tbody');
  const rows = new Map();
  const charts = {
    throughput: new Chart('Throughput', 'messages per second'),
    errors: new Chart('Errors', 'rejected or errored per second', 2),
    queue: new Chart('Queue depth', 'messages waiting for delivery', 0),
    ack: new Chart('Time to ACK (p95)', 'milliseconds, last minute'),
  };
  fill(main,
    h('h1', {}, 'Overview'),
    status,
    h('div', { class: 'scroll panel' }, h('table', { id: 'channels' },
      h('caption', { class: 'muted' }, 'All channels; rates over the last 5 s, error % over the last minute'),
      h('thead', {}, h('tr', {}, COLUMNS.map(([t, cls]) => h('th', { scope: 'col', class: cls }, t)))),
      body)),
    h('div', { class: 'grid' }, Object.values(charts).map((c) => c.el)));

  let lastStatus = 0;
  const render = () => {
    const snap = live.now;
    if (!snap) return;
    const i = live.history.length - 1;
    const names = snap.channels.map((c) => c.name);
    let total = 0;
    let errors = 0;
    let queued = 0;
    for (const name of names) {
      const f = figures(i, name);
      total += f.throughput || 0;
      errors += f.errorsPerSec || 0;
      queued += f.queue;
      let r = rows.get(name);
      if (!r) {
        const cells = {};
        const tr = h('tr', { dataset: { channel: name } });
        for (const key of ['name', 'state', 'source', 'rate', 'errpct', 'queue', 'oldest', 'p95', 'received', 'accepted', 'rejected', 'errored', 'last']) {
          const numeric = !['name', 'state', 'source', 'last'].includes(key);
          cells[key] = h('td', { class: `c-${key}${numeric ? ' num' : ''}` });
          tr.append(cells[key]);
        }
        cells.name.append(h('a', { href: `#/channel/${encodeURIComponent(name)}` }, name));
        body.append(tr);
        r = { tr, cells };
        rows.set(name, r);
      }
      const { c } = f;
      r.tr.classList.toggle('stopped', !c.running);
      fill(r.cells.state, h('span', { class: `badge ${c.running ? 'ok' : 'warn'}` }, c.running ? 'running' : 'stopped'));
      r.cells.source.textContent = c.source;
      r.cells.rate.textContent = num(f.throughput, 1);
      r.cells.errpct.textContent = f.errorPct === null ? '—' : `${num(f.errorPct, 1)} %`;
      r.cells.queue.textContent = num(f.queue);
      r.cells.oldest.textContent = age(f.oldest);
      r.cells.p95.textContent = ms(f.p95);
      r.cells.received.textContent = num(c.received);
      r.cells.accepted.textContent = num(c.accepted);
      r.cells.rejected.textContent = num(c.rejected);
      r.cells.errored.textContent = num(c.errored);
      r.cells.last.textContent = when(c.last_received);
    }
    // The live region is read out: at most every 10 s, not every second.
    if (Date.now() - lastStatus > 10000 || status.textContent.startsWith('Connecting')) {
      lastStatus = Date.now();
      status.textContent = `${names.length} channel${names.length === 1 ? '' : 's'} · ${num(total, 1)} msg/s · ${num(errors, 2)} errors/s · `
        + `${num(queued)} queued · ${modeNote()} · ${when(snap.at)}`;
    }
    charts.throughput.update(seriesOf(names, (f) => f.throughput));
    charts.errors.update(seriesOf(names, (f) => f.errorsPerSec));
    charts.queue.update(seriesOf(names, (f) => f.queue));
    charts.ack.update(seriesOf(names, (f) => f.p95));
  };
  return live.subscribe(render);
}

// ---------------------------------------------------------------------------------------
// One channel
// ---------------------------------------------------------------------------------------

export function channel(main, name) {
  const heading = h('h1', {}, `Channel ${name}`);
  const actions = h('div', { class: 'actions' });
  const cards = h('div', { class: 'cards', id: 'counters' });
  const config = h('div', { class: 'panel' });
  const destinations = h('div', { id: 'destinations' });
  const failures = h('div', { id: 'error-queues' });
  const events = h('div', { id: 'events' });
  const throughput = new Chart('Throughput and errors', 'per second');
  const ack = new Chart('Time to ACK (p95)', 'milliseconds, last minute');
  fill(main, heading, actions, cards,
    h('div', { class: 'grid' }, throughput.el, ack.el),
    h('h2', {}, 'Destinations'), destinations,
    h('h2', {}, 'Error queues'), failures,
    h('h2', {}, 'Configuration'), config,
    h('h2', {}, 'Recent events'), events);

  let detail = null;
  let stopped = false;
  const refresh = async () => {
    try {
      detail = await api(`/api/channels/${encodeURIComponent(name)}`);
    } catch (e) {
      fill(config, h('p', { class: 'error-text' }, e.message));
      return;
    }
    renderActions();
    fill(config, facts([
      ['Source', detail.source],
      ['State', detail.running ? 'running' : 'stopped'],
      ['Filters', num(detail.filters)],
      ['Transform steps', num(detail.transforms)],
      ['Converts to FHIR', detail.fhir ? `yes (${(detail.fhir_profiles || []).join(', ') || 'no sender profiles'})` : 'no'],
      ['Write-back', detail.write_back ? 'yes' : 'no'],
      ['Last message stored', when(detail.last_received_at)],
      ['Messages', h('a', { href: '#/messages', onclick: () => { searchChannel.value = name; } }, 'Search this channel’s messages')],
    ]));
    await renderFailures();
    try {
      const list = await api(`/api/events${query({ channel: name, limit: 25 })}`);
      fill(events, list.events.length ? table(['Time', 'Kind', 'Destination', 'Message', 'Detail'], list.events.map((e) => row([
        when(e.at), e.kind, e.destination || '—',
        e.message_id ? h('a', { href: `#/message/${e.message_id}` }, `#${e.message_id}`) : '—',
        e.detail,
      ])), { id: 'events-table' }) : h('p', { class: 'muted' }, 'No events yet.'));
    } catch (e) {
      fill(events, h('p', { class: 'error-text' }, e.message));
    }
  };

  // Each destination's error queue (deliveries that failed for good), newest first, with a
  // button that sends the whole queue again once its cause is fixed.
  const renderFailures = async () => {
    let list;
    try {
      list = await api(`/api/errors${query({ channel: name, limit: 20 })}`);
    } catch (e) {
      fill(failures, h('p', { class: 'error-text' }, e.message));
      return;
    }
    const failing = list.queues.filter((q) => q.total > 0);
    if (!failing.length) {
      fill(failures, h('p', { class: 'muted', id: 'no-failures' }, 'No failed deliveries.'));
      return;
    }
    fill(failures, ...failing.map((q) => h('section', { class: 'error-queue', dataset: { queue: q.queue } },
      h('h3', {}, h('code', {}, q.queue), ` · ${num(q.total)} failed`),
      table(['Failed', 'Message', 'Control id', 'Type', ['Attempts', 'num'], 'Last error'], q.entries.map((e) => row([
        when(e.failed_at), h('a', { href: `#/message/${e.message_id}` }, `#${e.message_id}`), e.control_id,
        e.message_type, [num(e.attempts), 'num'], e.last_error || '—',
      ], { dataset: { seq: String(e.seq), control: e.control_id } }))),
      q.total > q.entries.length ? h('p', { class: 'muted' }, `The newest ${q.entries.length} of ${num(q.total)}.`) : null,
      can('operator') ? h('button', {
        type: 'button', class: 'secondary retry-queue',
        onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            const r = await api('/api/errors/retry', { method: 'POST', body: { queue: q.queue } });
            const skipped = r.skipped.length ? `, ${r.skipped.length} skipped (${r.skipped[0].reason})` : '';
            const left = r.remaining ? `, ${num(r.remaining)} left: retry again` : '';
            toast(`${q.queue}: ${r.requeued.length} sent again${skipped}${left}`);
          } catch (e) {
            toast(`Retry of ${q.queue} failed: ${e.message}`);
          }
          await refresh();
        },
      }, `Send all ${num(q.total)} again`) : null)));
  };

  const renderActions = () => {
    if (!detail) return;
    const running = detail.running;
    fill(actions,
      h('span', { class: `badge ${running ? 'ok' : 'warn'}`, id: 'channel-state' }, running ? 'running' : 'stopped'),
      can('operator') ? h('button', {
        type: 'button', id: running ? 'stop' : 'start', class: running ? 'danger' : '',
        onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            await api(`/api/channels/${encodeURIComponent(name)}/${running ? 'stop' : 'start'}`, { method: 'POST' });
            toast(`Channel ${name} ${running ? 'stopped: senders are answered AE' : 'started'}`);
          } catch (e) {
            toast(`Could not ${running ? 'stop' : 'start'} ${name}: ${e.message}`);
          }
          await refresh();
          const again = document.getElementById(running ? 'start' : 'stop');
          if (again) again.focus();
        },
      }, running ? 'Stop channel' : 'Start channel') : h('span', { class: 'muted' }, 'Operators can stop and start channels.'));
  };

  const render = () => {
    const i = live.history.length - 1;
    const f = i >= 0 ? figures(i, name) : null;
    if (!f) return;
    const { c } = f;
    const card = (label, value, id) => h('div', { class: 'card', id }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
    fill(cards,
      card('msg/s', num(f.throughput, 1), 'card-rate'),
      card('received', num(c.received), 'card-received'),
      card('accepted', num(c.accepted), 'card-accepted'),
      card('rejected', num(c.rejected), 'card-rejected'),
      card('errored', num(c.errored), 'card-errored'),
      card('filtered', num(c.filtered)),
      card('duplicates', num(c.duplicates)),
      card('unmapped codes', num(c.unmapped_codes)),
      card('script errors', num(c.script_errors)),
      card('store failures', num(c.store_failures)),
      c.drift_findings !== undefined && card('drift findings', num(c.drift_findings)),
      c.connections_open !== null && c.connections_open !== undefined && card('connections open', num(c.connections_open)),
      ...sourceCards(c, card),
      card('p95 ACK (1 min)', ms(f.p95)));
    fill(destinations, c.destinations.length ? table(
      ['Destination', 'Queue', ['Depth', 'num'], ['Oldest', 'num'], ['Delivered', 'num'], ['Retried', 'num'],
        ['Failed', 'num'], ['Failing in a row', 'num'], 'Last success', 'Last failure', ['p95 ACK', 'num']],
      c.destinations.map((d) => row([
        d.name, h('code', {}, d.queue), [num(d.queue_depth), 'num'], [age(d.oldest_age_ms), 'num'],
        [num(d.delivered), 'num'], [num(d.retried), 'num'], [num(d.failed), 'num'],
        [num(d.consecutive_failures), 'num'], when(d.last_success), when(d.last_failure),
        [ms(d.ack ? quantile(d.ack, 0.95) : null), 'num'],
      ], { dataset: { destination: d.name } })), { id: 'destinations-table' },
    ) : h('p', { class: 'muted' }, 'This channel has no destinations.'));
    throughput.update([
      { name: 'received/s', points: live.history.map((snap, j) => [snap.at, (figures(j, name) || {}).throughput ?? null]) },
      { name: 'errors/s', points: live.history.map((snap, j) => [snap.at, (figures(j, name) || {}).errorsPerSec ?? null]) },
    ]);
    ack.update([{ name: 'p95', points: live.history.map((snap, j) => [snap.at, (figures(j, name) || {}).p95 ?? null]) }]);
    if (detail && detail.running !== c.running) refresh();
  };

  refresh();
  const unsubscribe = live.subscribe(render);
  const timer = setInterval(() => { if (!stopped) refresh(); }, 5000);
  return () => { stopped = true; clearInterval(timer); unsubscribe(); };
}

/**
 * What the source met besides messages (bad input no message counter shows), for the source
 * kinds that meet it; none when the figures come from polling, which does not carry them.
 */
function sourceCards(c, card) {
  const s = c.source_counts;
  if (!s) return [];
  if (c.source === 'mllp') {
    return [
      card('bytes outside frames', num(s.garbage_bytes), 'card-garbage'),
      card('oversized frames', num(s.oversized_frames), 'card-oversized'),
      card('unfinished frames', num(s.read_timeouts), 'card-unfinished'),
      card('TLS failures', num(s.tls_failures), 'card-tls-failures'),
    ];
  }
  if (c.source === 'directory') {
    return [
      card('files done', num(s.files_done), 'card-files-done'),
      card('files to error', num(s.files_failed), 'card-files-failed'),
    ];
  }
  return [];
}

/** Set by the channel page's link: the channel the message search starts with. */
export const searchChannel = { value: '' };
