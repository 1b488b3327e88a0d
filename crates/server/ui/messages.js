// The message browser (search over `GET /api/messages`, paged) and one message's detail
// (`GET /api/messages/{id}`: raw text, fields with their standard names, the parsed tree, the
// FHIR bundle, every delivery with its ACK; reprocess and resend). The search criteria stay in
// this page's memory, never in the URL: a patient identifier is PHI.

import { api, can, query } from './api.js';
import { h, fill, table, row, facts, num, when, toast } from './dom.js';
import { searchChannel } from './overview.js';

const PAGE = 50;
const STATES = ['received', 'accepted', 'rejected', 'duplicate', 'filtered', 'error', 'held'];

/** The last search, kept while the app runs (back from a message returns to it). */
const last = { criteria: null, offset: 0 };

function field(id, label, input) {
  input.id = id;
  return h('label', { for: id }, label, input);
}

/** `2024-05-06T10:00` (datetime-local, the browser's zone) as RFC 3339 UTC. */
function rfc3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export function browser(main) {
  const channel = h('select', {}, h('option', { value: '' }, 'Any channel'));
  const type = h('input', { type: 'text', placeholder: 'ADT^A01', autocomplete: 'off' });
  const state = h('select', {}, h('option', { value: '' }, 'Any state'), STATES.map((x) => h('option', { value: x }, x)));
  const control = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const app = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const facility = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const patient = h('input', { type: 'text', placeholder: 'id^authority', autocomplete: 'off', spellcheck: 'false' });
  const from = h('input', { type: 'datetime-local', step: 1 });
  const to = h('input', { type: 'datetime-local', step: 1 });
  const results = h('div', { id: 'results-area' });
  const pager = h('div', { class: 'actions' });
  const note = h('p', { class: 'muted', 'aria-live': 'polite', id: 'results-note' });
  const form = h('form', {
    id: 'search', class: 'filters panel', role: 'search',
    onsubmit: (ev) => { ev.preventDefault(); run(0); },
  },
  field('f-channel', 'Channel', channel),
  field('f-type', 'Message type (MSH-9)', type),
  field('f-state', 'State', state),
  field('f-control', 'Control id (MSH-10)', control),
  field('f-app', 'Sending application (MSH-3)', app),
  field('f-facility', 'Sending facility (MSH-4)', facility),
  field('f-patient', 'Patient identifier (PID-3)', patient),
  field('f-from', 'Received from', from),
  field('f-to', 'Received before', to),
  h('div', { class: 'actions' },
    h('button', { type: 'submit' }, 'Search'),
    h('button', { type: 'reset', class: 'secondary', onclick: () => { last.criteria = null; fill(results); fill(pager); note.textContent = ''; } }, 'Clear')));
  fill(main, h('h1', {}, 'Messages'), form, note, results, pager);

  const criteria = () => ({
    channel: channel.value, type: type.value.trim(), state: state.value,
    control_id: control.value.trim(), sending_application: app.value.trim(),
    sending_facility: facility.value.trim(), patient: patient.value.trim(),
    from: rfc3339(from.value), to: rfc3339(to.value),
  });

  let live = true;
  const run = async (offset) => {
    const c = criteria();
    last.criteria = { ...c, raw: { from: from.value, to: to.value } };
    last.offset = offset;
    note.textContent = 'Searching…';
    let list;
    try {
      list = await api(`/api/messages${query({ ...c, limit: PAGE, offset })}`);
    } catch (e) {
      if (!live) return;
      note.textContent = '';
      fill(results, h('p', { class: 'error-text', role: 'alert' }, e.message));
      fill(pager);
      return;
    }
    if (!live) return;
    const first = offset + 1;
    note.textContent = list.messages.length
      ? `Messages ${first}–${offset + list.messages.length}, newest first`
      : 'No message matches.';
    fill(results, list.messages.length ? table(
      ['Received', 'Channel', 'Type', 'Control id', 'State', 'Sender', ['Size', 'num'], ''],
      list.messages.map((m) => row([
        when(m.received_at), m.channel, m.message_type, h('code', {}, m.control_id),
        h('span', { class: `badge ${badge(m.state)}` }, m.state),
        `${m.sending_application}/${m.sending_facility}`, [num(m.size), 'num'],
        h('a', { class: 'open', href: `#/message/${m.id}`, 'aria-label': `Open message ${m.control_id}` }, 'Open'),
      ], { dataset: { id: m.id, control: m.control_id } })), { id: 'results' },
    ) : null);
    fill(pager,
      h('button', { type: 'button', class: 'secondary', id: 'prev', disabled: offset === 0, onclick: () => run(Math.max(0, offset - PAGE)) }, '← Newer'),
      h('button', { type: 'button', class: 'secondary', id: 'next', disabled: list.next_offset === null, onclick: () => run(list.next_offset) }, 'Older →'));
  };

  (async () => {
    try {
      const list = await api('/api/channels');
      for (const c of list.channels) channel.append(h('option', { value: c.name }, c.name));
    } catch { /* the search still works by typing nothing */ }
    if (searchChannel.value) {
      channel.value = searchChannel.value;
      searchChannel.value = '';
      run(0);
    } else if (last.criteria) {
      const c = last.criteria;
      channel.value = c.channel; type.value = c.type; state.value = c.state; control.value = c.control_id;
      app.value = c.sending_application; facility.value = c.sending_facility;
      patient.value = c.patient; from.value = c.raw.from; to.value = c.raw.to;
      run(last.offset);
    } else {
      run(0);
    }
  })();
  return () => { live = false; };
}

function badge(state) {
  if (state === 'accepted' || state === 'delivered') return 'ok';
  if (state === 'rejected' || state === 'error' || state === 'failed') return 'bad';
  return 'warn';
}

// ---------------------------------------------------------------------------------------
// One message
// ---------------------------------------------------------------------------------------

export function message(main, id) {
  let reveal = false;
  let live = true;
  const load = async (focusId) => {
    let d;
    try {
      d = await api(`/api/messages/${encodeURIComponent(id)}${reveal ? '?reveal=true' : ''}`);
    } catch (e) {
      if (!live) return;
      fill(main, h('h1', {}, `Message ${id}`), h('p', { class: 'error-text', role: 'alert' }, e.message),
        h('p', {}, h('a', { href: '#/messages' }, 'Back to the search')));
      return;
    }
    if (!live) return;
    render(d);
    if (focusId) document.getElementById(focusId)?.focus();
  };

  const render = (d) => {
    const m = d.message;
    const banner = d.masked
      ? h('div', { class: 'banner masked', id: 'masked-banner' },
        h('span', {}, 'PHI is masked: the patient’s fields show ***.'),
        can('operator')
          ? h('button', { type: 'button', class: 'secondary', id: 'reveal', onclick: () => { reveal = true; load('hide'); } }, 'Reveal PHI (audited)')
          : h('span', { class: 'muted' }, 'Operators and admins can reveal it; each reveal is audited.'))
      : h('div', { class: 'banner revealed', id: 'revealed-banner' },
        h('span', {}, 'PHI is shown. This read was recorded in the audit log.'),
        h('button', { type: 'button', class: 'secondary', id: 'hide', onclick: () => { reveal = false; load('reveal'); } }, 'Mask again'));

    const actions = h('div', { class: 'actions', id: 'message-actions' });
    if (can('operator')) {
      const queues = [...new Set(d.deliveries.map((x) => x.destination))];
      const target = h('select', { id: 'resend-to' }, queues.map((q) => h('option', { value: q }, q)));
      actions.append(
        h('button', {
          type: 'button', id: 'reprocess',
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              const r = await api(`/api/messages/${id}/reprocess`, { method: 'POST' });
              toast(`Message ${id} reprocessed: ${r.state}${r.queues.length ? `, queued to ${r.queues.join(', ')}` : ''}${r.reason ? ` (${r.reason})` : ''}`);
            } catch (e) {
              toast(`Reprocess failed: ${e.message}`);
            }
            await load('reprocess');
          },
        }, 'Reprocess'),
        queues.length ? h('label', { for: 'resend-to', class: 'inline' }, 'Resend to', target) : null,
        queues.length ? h('button', {
          type: 'button', id: 'resend', class: 'secondary',
          onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              const r = await api(`/api/messages/${id}/resend`, { method: 'POST', body: { destination: target.value } });
              toast(`Message ${id} queued again to ${r.destination}`);
            } catch (e) {
              toast(`Resend failed: ${e.message}`);
            }
            await load('resend');
          },
        }, 'Resend') : null);
    } else {
      actions.append(h('span', { class: 'muted' }, 'Operators can reprocess and resend messages.'));
    }

    const tabs = [
      ['fields', 'Fields', fields(d)],
      ['raw', 'Raw', rawView(d)],
      ['tree', 'Parsed tree', treeView(d)],
      ['fhir', 'FHIR', fhirView(d)],
      ['deliveries', `Deliveries (${d.deliveries.length})`, deliveries(d)],
    ];
    const panels = tabs.map(([key, , content]) => h('section', { id: `panel-${key}`, role: 'tabpanel', 'aria-labelledby': `tab-${key}`, class: 'panel' }, content));
    const buttons = tabs.map(([key, label], i) => h('button', {
      type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': `panel-${key}`,
      onclick: () => select(i),
      onkeydown: (ev) => {
        if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
          const next = (i + (ev.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length;
          select(next);
          buttons[next].focus();
        }
      },
    }, label));
    const select = (i) => {
      buttons.forEach((b, j) => {
        b.setAttribute('aria-selected', String(i === j));
        b.tabIndex = i === j ? 0 : -1;
        panels[j].classList.toggle('hidden', i !== j);
      });
    };
    fill(main,
      h('p', {}, h('a', { href: '#/messages' }, '← Back to the search')),
      h('h1', {}, `Message ${m.control_id} `, h('span', { class: `badge ${badge(m.state)}`, id: 'message-state' }, m.state)),
      h('div', { class: 'panel' }, facts([
        ['Id', String(m.id)], ['Channel', h('a', { href: `#/channel/${encodeURIComponent(m.channel)}` }, m.channel)],
        ['Type', m.message_type], ['Control id', h('code', {}, m.control_id)], ['Version', m.version],
        ['Sender', `${m.sending_application}/${m.sending_facility} from ${m.peer}`],
        ['Received', when(m.received_at)], ['Size', `${num(m.size)} bytes`],
        ['Flags', [m.control_id_reused && 'control id reused', m.duplicate_of && `duplicate of #${m.duplicate_of}`, m.payload_purged && 'payload purged by retention'].filter(Boolean).join(', ') || 'none'],
      ])),
      banner, actions,
      h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Message views' }, buttons),
      panels);
    select(0);
  };

  load();
  return () => { live = false; };
}

function value(text) {
  return text === '***' ? h('span', { class: 'masked-value', title: 'masked' }, '***') : h('code', {}, text);
}

/** Each segment's fields with position, standard name and value. */
function fields(d) {
  if (!d.parsed) return h('p', { class: 'muted' }, d.parse_error ? `The message does not parse: ${d.parse_error}` : 'No payload (purged by retention).');
  return h('div', {}, h('p', { class: 'muted' }, `Field names from HL7 v${d.parsed.version}.`),
    table(['Segment', 'Field', 'Name', 'Value'], d.parsed.segments.flatMap((seg) => seg.fields.map((f, i) => row([
      i === 0 ? h('strong', {}, `${seg.id} (${seg.index})`) : '',
      h('code', {}, f.position), [f.name || '—', 'f-name'], [value(f.value), 'f-value'],
    ], { dataset: { position: f.position, segment: String(seg.index) } }))), { id: 'segments' }));
}

function rawView(d) {
  const lines = (t) => (t || '').replace(/\r\n?/g, '\n');
  return h('div', {},
    h('h2', {}, 'As received'), d.raw === null ? h('p', { class: 'muted' }, 'Purged by retention.') : h('pre', { id: 'raw' }, lines(d.raw)),
    d.outbound ? [h('h2', {}, 'As sent on (after transforms)'), h('pre', { id: 'outbound' }, lines(d.outbound))] : null,
    h('h2', {}, 'ACK answered to the sender'), d.ack ? h('pre', { id: 'ack' }, lines(d.ack)) : h('p', { class: 'muted' }, 'None stored.'));
}

function treeView(d) {
  if (!d.parsed) return h('p', { class: 'muted' }, 'The message does not parse.');
  return h('div', { id: 'tree' }, d.parsed.segments.map((seg) => h('details', { class: 'tree' },
    h('summary', {}, `${seg.id} (segment ${seg.index}, ${seg.fields.length} fields)`),
    seg.fields.map((f) => h('details', { class: 'tree' },
      h('summary', {}, `${f.position}${f.name ? ` ${f.name}` : ''}: `, value(f.value)),
      f.repetitions.map((rep, r) => h('div', { class: 'tree' },
        f.repetitions.length > 1 ? h('div', { class: 'muted' }, `repetition ${r + 1}`) : null,
        rep.map((comp, c) => h('div', { class: 'tree' }, `${f.position}.${c + 1}: `,
          comp.length > 1 ? comp.map((sub, k) => h('span', {}, k ? ' & ' : '', value(sub))) : value(comp[0] ?? ''))))))))));
}

function fhirView(d) {
  if (d.fhir) return h('pre', { id: 'fhir' }, JSON.stringify(d.fhir, null, 2));
  if (d.fhir_error) return h('p', { class: 'error-text' }, `The conversion failed: ${d.fhir_error}`);
  return h('p', { class: 'muted' }, 'This channel does not convert to FHIR.');
}

function deliveries(d) {
  if (!d.deliveries.length) return h('p', { class: 'muted' }, 'Not routed to any destination.');
  return table(['Destination', 'State', ['Attempts', 'num'], 'Next attempt', 'Last error', 'Last ACK', 'Updated'],
    d.deliveries.map((x) => row([
      h('code', {}, x.destination), h('span', { class: `badge ${badge(x.state)}` }, x.state), [num(x.attempts), 'num'],
      when(x.next_attempt_at), x.last_error || '—',
      x.last_ack ? h('pre', {}, x.last_ack.replace(/\r\n?/g, '\n')) : '—', when(x.updated_at),
    ], { dataset: { seq: String(x.seq) } })), { id: 'deliveries' });
}

