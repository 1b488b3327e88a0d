// The dashboard's shell: who is signed in (`GET /auth/me`), sign-in and sign-out, and the
// routing by URL fragment (`#/overview`, `#/channel/NAME`, `#/messages`, `#/message/ID`,
// `#/alerts`, `#/unmapped`, `#/profiles`, `#/login`). Each page is a function that fills
// <main> and returns how to stop its timers and streams when another page opens.

import { api, session, whenSignedOut, ApiError } from './api.js';
import { h, fill } from './dom.js';
import { overview, channel } from './overview.js';
import { browser, message } from './messages.js';
import { alerts, unmapped, profiles } from './admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const logout = document.getElementById('logout');

const PAGES = [
  [/^overview$/, (m) => overview(m), 'Overview'],
  [/^channel\/(.+)$/, (m, name) => channel(m, decodeURIComponent(name)), 'Channel'],
  [/^messages$/, (m) => browser(m), 'Messages'],
  [/^message\/(\d+)$/, (m, id) => message(m, id), 'Message'],
  [/^alerts$/, (m) => alerts(m), 'Alerts'],
  [/^unmapped$/, (m) => unmapped(m), 'Unmapped codes'],
  [/^profiles$/, (m) => profiles(m), 'Feed profiles'],
];

let leave = null;
let signingOut = false;

function path() {
  const hash = window.location.hash;
  return hash.startsWith('#/') ? hash.slice(2) : '';
}

function showSignedIn(on) {
  nav.hidden = !on;
  logout.hidden = !on;
  who.textContent = on && session.user ? `${session.user.username} (${session.user.role})` : '';
}

async function route() {
  if (leave) { leave(); leave = null; }
  const p = path();
  if (p === 'login' || !session.user) {
    showSignedIn(false);
    loginPage();
    return;
  }
  showSignedIn(true);
  const found = PAGES.find(([re]) => re.test(p));
  if (!found) {
    window.location.replace('#/overview');
    return;
  }
  const [re, page, title] = found;
  for (const a of nav.querySelectorAll('a')) {
    const current = p === a.getAttribute('href').slice(2) || (p.startsWith('channel/') && a.getAttribute('href') === '#/overview')
      || (p.startsWith('message/') && a.getAttribute('href') === '#/messages');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${title} · Causeway`;
  leave = page(main, ...p.match(re).slice(1)) || null;
  main.focus({ preventScroll: true });
}

function loginPage() {
  document.title = 'Sign in · Causeway';
  const error = h('p', { class: 'error-text', role: 'alert', id: 'login-error' });
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', {
    id: 'login',
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      submit.disabled = true;
      try {
        const me = await api('/auth/login', { method: 'POST', body: { username: user.value, password: pass.value }, quiet401: true });
        session.user = { username: me.username, role: me.role };
        pass.value = '';
        if (path() === 'login' || path() === '') window.location.hash = '#/overview';
        else route();
      } catch (e) {
        error.textContent = e.status === 401 ? 'Wrong user name or password.' : e.message;
        submit.disabled = false;
        pass.focus();
      }
    },
  },
  h('label', { for: 'username' }, 'User name', user),
  h('label', { for: 'password' }, 'Password', pass),
  submit, error);
  fill(main, h('div', { class: 'login panel' }, h('h1', {}, 'Sign in to Causeway'), form));
  user.focus();
}

whenSignedOut(() => {
  if (!session.user || signingOut) return;
  session.user = null;
  route();
});

logout.addEventListener('click', async () => {
  signingOut = true;
  try { await api('/auth/logout', { method: 'POST', quiet401: true }); } catch { /* signed out either way */ }
  signingOut = false;
  session.user = null;
  document.getElementById('toast').textContent = '';
  if (path() === 'login') route();
  else window.location.hash = '#/login';
});

document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', route);

(async () => {
  try {
    const me = await api('/auth/me', { quiet401: true });
    if (me.kind === 'user') session.user = { username: me.subject, role: me.role };
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
  if (session.user && (path() === '' || path() === 'login')) {
    window.location.replace('#/overview'); // hashchange routes
    return;
  }
  route();
})();
