// Enhances the server-rendered listing: sortable columns (aria-sort), a filter box, local
// dates, download and copy-link actions, strings in the reader's language, and the upload
// panel when the server accepts uploads. Every name is inserted as text, never as HTML.
// Large directories are rendered a page of rows at a time so the page never freezes.
import { t, lang, human, localDate } from './i18n.js';

const PAGE = 500;
const body = document.body;
const table = document.getElementById('listing');
const tbody = table.tBodies[0];
const parentRow = tbody.querySelector('tr.up');
const state = { entries: [], key: 'name', dir: 1, filter: '', shown: PAGE };

/** The page's one polite live region; errors use role=alert elements of their own. */
const live = document.createElement('p');
live.id = 'status';
live.className = 'visually-hidden';
live.setAttribute('aria-live', 'polite');
body.append(live);
export function announce(msg) {
  live.textContent = '';
  // A fresh text node makes screen readers read a repeated message again.
  requestAnimationFrame(() => { live.textContent = msg; });
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}
export { el };

/** Entries from the server-rendered rows (no request needed for the first render). */
function fromRows() {
  const out = [];
  for (const tr of tbody.querySelectorAll('tr.f, tr.d')) {
    const a = tr.querySelector('a');
    const dir = tr.classList.contains('d');
    const text = a.textContent;
    out.push({
      name: dir ? text.slice(0, -1) : text,
      type: dir ? 'dir' : 'file',
      size: Number(tr.dataset.size),
      mtime: Number(tr.dataset.mtime),
      href: a.getAttribute('href'),
    });
  }
  return out;
}

/** Re-reads the directory (JSON listing) and renders it: how finished uploads appear. */
export async function refresh() {
  const r = await fetch('?json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!r.ok) return;
  state.entries = await r.json();
  render();
}

const collator = new Intl.Collator(lang, { numeric: true, sensitivity: 'base' });
function compare(a, b) {
  if (a.type !== b.type) return a.type === 'dir' ? -1 : 1; // folders first, whatever the order
  let c = 0;
  if (state.key === 'size') c = a.size - b.size;
  else if (state.key === 'mtime') c = a.mtime - b.mtime;
  if (c === 0) c = collator.compare(a.name, b.name);
  return c * state.dir;
}

function row(e) {
  const dir = e.type === 'dir';
  const link = el('a', { href: e.href }, dir ? `${e.name}/` : e.name);
  const sub = el('span', { class: 'sub' }, dir ? localDate(e.mtime) : `${human(e.size)} · ${localDate(e.mtime)}`);
  const size = el('td', { class: 's' }, dir ? '-' : human(e.size));
  if (!dir) size.title = t('bytes', e.size);
  const when = el('time', { dateTime: new Date(e.mtime * 1000).toISOString() }, localDate(e.mtime));
  const actions = el('td', { class: 'a' });
  if (!dir) {
    const dl = el('a', { href: e.href, class: 'button', download: e.name, title: t('download') }, t('download'));
    dl.setAttribute('aria-label', `${t('download')} ${e.name}`);
    actions.append(dl, ' ');
  }
  const copy = el('button', { type: 'button', title: t('copyLink') }, t('copyLink'));
  copy.setAttribute('aria-label', `${t('copyLink')}: ${e.name}`);
  copy.addEventListener('click', () => copyLink(e));
  actions.append(copy);
  return el('tr', { class: dir ? 'd' : 'f' },
    el('td', { class: 'n' }, link, sub), size, el('td', { class: 'm' }, when), actions);
}

async function copyLink(e) {
  const url = new URL(e.href, location.href).href;
  try {
    await navigator.clipboard.writeText(url);
    announce(t('copied', e.name));
  } catch {
    announce(`${t('copyFailed')}: ${url}`);
  }
}

function render() {
  const f = state.filter.toLocaleLowerCase();
  const list = f ? state.entries.filter((e) => e.name.toLocaleLowerCase().includes(f)) : state.entries.slice();
  list.sort(compare);
  const frag = document.createDocumentFragment();
  if (parentRow) frag.append(parentRow);
  for (const e of list.slice(0, state.shown)) frag.append(row(e));
  const rest = list.length - state.shown;
  if (rest > 0) {
    const more = el('button', { type: 'button' }, t('showMore', Math.min(rest, PAGE)));
    more.addEventListener('click', () => { state.shown += PAGE; render(); });
    frag.append(el('tr', { class: 'more' }, el('td', { colSpan: 4 }, more)));
  }
  tbody.replaceChildren(frag);
  const count = document.getElementById('count');
  let text = t('items', state.entries.length);
  if (f) text += ` · ${t('filtered', list.length)}`;
  if (rest > 0) text += ` · ${t('showing', state.shown, list.length)}`;
  count.textContent = text;
}

function sortHeaders() {
  const cols = [['n', 'name'], ['s', 'size'], ['m', 'mtime']];
  const row = table.tHead.rows[0];
  for (const [cls, key] of cols) {
    const th = row.querySelector(`th.${cls}`);
    const label = t(key === 'mtime' ? 'modified' : key);
    const b = el('button', { type: 'button' }, label);
    th.replaceChildren(b);
    b.addEventListener('click', () => {
      state.dir = state.key === key ? -state.dir : 1;
      state.key = key;
      for (const other of row.querySelectorAll('th')) other.removeAttribute('aria-sort');
      th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending');
      render();
      announce(t('sorted', label, t(state.dir > 0 ? 'asc' : 'desc')));
    });
  }
  row.querySelector('th.n').setAttribute('aria-sort', 'ascending');
  row.append(el('th', { scope: 'col', class: 'a' }, el('span', { class: 'visually-hidden' }, t('actions'))));
  parentRow?.append(el('td', { class: 'a' }));
}

function tools() {
  const box = document.getElementById('tools');
  const input = el('input', { type: 'search', id: 'filter', placeholder: t('filter'), autocomplete: 'off' });
  input.setAttribute('aria-label', t('filterLabel'));
  input.setAttribute('aria-controls', 'listing');
  let timer = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = input.value; state.shown = PAGE; render(); }, 120);
  });
  box.append(el('div', { class: 'grow' }, input));
}

function translate() {
  document.documentElement.lang = lang;
  const title = document.getElementById('title');
  const path = decodeURIComponent(location.pathname);
  title.textContent = `${t('indexOf')} ${path}`;
  document.title = title.textContent;
  const home = document.querySelector('#crumbs a[href="/"]');
  if (home) home.textContent = t('home');
  if (parentRow) parentRow.querySelector('a').title = t('parent');
}

sessionStorage.removeItem('ferry-read-token'); // the read token (if any) was accepted
translate();
sortHeaders();
tools();
state.entries = fromRows();
render();
if (body.dataset.tus) {
  import('./upload.js').then((m) => m.init({ refresh, announce, el }));
}
