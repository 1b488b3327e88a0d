// Alerts (`GET /api/alerts`, polled every 2 s), unmapped code values (`GET /api/unmapped`,
// with a form that adds a mapping through `POST /api/profiles/mappings`) and feed profiles
// (`GET /api/profiles`, `GET /api/drift`). These APIs may be newer than the dashboard: a
// page renders whatever fields come and says so plainly when the server lacks the route.

import { api, can, query, ApiError } from './api.js';
import { h, fill, table, row, num, when, tree, toast } from './dom.js';

function unavailable(e, what) {
  if (e instanceof ApiError && e.status === 404) return h('p', { class: 'muted' }, `This server does not offer ${what}.`);
  return h('p', { class: 'error-text', role: 'alert' }, e.message);
}

// ---------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------

const ALERT_COLUMNS = ['rule', 'kind', 'severity', 'channel', 'destination', 'state', 'since'];

function alertRows(list, id) {
  if (!list || !list.length) return h('p', { class: 'muted', id: `${id}-none` }, 'None.');
  const extra = [...new Set(list.flatMap((a) => Object.keys(a)))].filter((k) => !ALERT_COLUMNS.includes(k));
  const cell = (a, k) => {
    const v = a[k];
    if (v === undefined || v === null) return '—';
    if (k === 'severity') return h('span', { class: `badge ${v === 'critical' ? 'bad' : 'warn'}` }, String(v));
    if (k === 'since' || k.endsWith('_at') || k === 'at') return when(v);
    return typeof v === 'object' ? tree(v) : String(v);
  };
  return table([...ALERT_COLUMNS, ...extra], list.map((a) => row(
    [...ALERT_COLUMNS, ...extra].map((k) => [cell(a, k), `a-${k}`]),
    { dataset: { rule: String(a.rule ?? ''), state: String(a.state ?? '') } },
  )), { id });
}

export function alerts(main) {
  const status = h('p', { class: 'muted', 'aria-live': 'polite', id: 'alerts-status' });
  const active = h('div', { id: 'alerts-active-area' });
  const recent = h('div', { id: 'alerts-recent-area' });
  fill(main, h('h1', {}, 'Alerts'), status, h('h2', {}, 'Active'), active, h('h2', {}, 'Recent'), recent);
  let live = true;
  let count = null;
  const tick = async () => {
    try {
      const a = await api('/api/alerts');
      if (!live) return;
      fill(active, alertRows(a.active, 'alerts-active'));
      fill(recent, alertRows(a.recent, 'alerts-recent'));
      const n = (a.active || []).length;
      if (n !== count) status.textContent = n ? `${n} active alert${n > 1 ? 's' : ''}` : 'No active alerts';
      count = n;
    } catch (e) {
      if (!live) return;
      fill(active, unavailable(e, 'alerts'));
      fill(recent);
    }
  };
  tick();
  const timer = setInterval(tick, 2000);
  return () => { live = false; clearInterval(timer); };
}

// ---------------------------------------------------------------------------------------
// Unmapped code values
// ---------------------------------------------------------------------------------------

export function unmapped(main) {
  const area = h('div', { id: 'unmapped-area' });
  const formArea = h('div', { id: 'mapping-form-area' });
  fill(main, h('h1', {}, 'Unmapped code values'),
    h('p', { class: 'muted' }, 'Code values no code map of their sender knew, most frequent first. Add a mapping, then reprocess the messages that carried them.'),
    formArea, area);
  let live = true;
  const load = async () => {
    let list;
    try {
      list = await api('/api/unmapped');
    } catch (e) {
      if (live) fill(area, unavailable(e, 'unmapped codes'));
      return;
    }
    if (!live) return;
    fill(area, list.codes.length ? [
      table(['Channel', 'Sender', 'Map', 'Field', 'System', 'Code', 'Policy', ['Count', 'num'], 'First seen', 'Last seen', 'Last message', ''],
        list.codes.map((c) => row([
          c.channel, c.sender || '—', c.map || '—', c.field || '—', c.system || '—',
          c.code !== null && c.code !== undefined ? h('code', {}, c.code) : (c.detail || '—'),
          c.policy || 'pass/hold', [num(c.count), 'num'], when(c.first_seen), when(c.last_seen),
          c.last_message_id ? h('a', { href: `#/message/${c.last_message_id}` }, `#${c.last_message_id}`) : '—',
          can('operator') && c.map && c.code ? h('button', { type: 'button', class: 'secondary', onclick: () => mappingForm(formArea, c, load) }, 'Add mapping') : '',
        ])), { id: 'unmapped' }),
      list.truncated ? h('p', { class: 'muted' }, `Built from the newest ${num(list.events_scanned)} events only.`) : null,
    ] : h('p', { class: 'muted' }, 'No unmapped code values.'));
  };
  load();
  return () => { live = false; };
}

function mappingForm(area, c, reload) {
  const input = (id, label, val = '', attrs = {}) => {
    const el = h('input', { type: 'text', id, value: val, autocomplete: 'off', ...attrs });
    return [el, h('label', { for: id }, label, el)];
  };
  const [profile, profileL] = input('m-profile', 'Profile (optional)');
  const [system, systemL] = input('m-target-system', 'Target system', '', { required: true, placeholder: 'the code system URI' });
  const [code, codeL] = input('m-target-code', 'Target code', '', { required: true });
  const [display, displayL] = input('m-target-display', 'Target display', '');
  const error = h('p', { class: 'error-text', role: 'alert' });
  const form = h('form', {
    class: 'filters panel', id: 'mapping-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      const body = {
        channel: c.channel, map: c.map, code: c.code,
        target: { system: system.value.trim(), code: code.value.trim(), display: display.value.trim() },
      };
      if (profile.value.trim()) body.profile = profile.value.trim();
      if (c.system) body.system = c.system;
      try {
        await api('/api/profiles/mappings', { method: 'POST', body });
        toast(`Mapped ${c.map} ${c.code} to ${body.target.system}|${body.target.code}`);
        fill(area);
        reload();
      } catch (e) {
        error.textContent = e.status === 404 ? 'This server cannot add mappings.' : e.message;
      }
    },
  },
  h('h2', {}, `Map ${c.code} in ${c.map} (${c.channel})`),
  profileL, systemL, codeL, displayL,
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add mapping'),
    h('button', { type: 'button', class: 'secondary', onclick: () => fill(area) }, 'Cancel')),
  error);
  fill(area, form);
  system.focus();
}

// ---------------------------------------------------------------------------------------
// Feed profiles and drift
// ---------------------------------------------------------------------------------------

export function profiles(main) {
  const profileArea = h('div', { id: 'profiles-area' });
  const driftArea = h('div', { id: 'drift-area' });
  fill(main, h('h1', {}, 'Feed profiles'),
    h('p', { class: 'muted' }, 'What each sender’s feed looks like (its profile, code maps, learned segments, fields and fill rates) and where it drifted from it.'),
    h('h2', {}, 'Profiles'), profileArea, h('h2', {}, 'Drift'), driftArea);
  let live = true;
  (async () => {
    for (const [path, area, what] of [['/api/profiles', profileArea, 'feed profiles'], [`/api/drift${query({})}`, driftArea, 'drift findings']]) {
      try {
        const data = await api(path);
        if (live) fill(area, h('div', { class: 'panel' }, tree(data)));
      } catch (e) {
        if (live) fill(area, unavailable(e, what));
      }
    }
  })();
  return () => { live = false; };
}
