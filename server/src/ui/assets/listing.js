// Enhances the server-rendered listing: sortable columns (aria-sort), a filter box, local
// dates, download and copy-link actions, strings in the reader's language, and the upload
// panel when the server accepts uploads. Sorting and filtering work on a compact array of
// entries, never on the rows (rows.js), so a directory of 100,000 entries keeps the page
// responsive. Every name is inserted as text, never as HTML.
import { t, lang } from './i18n.js';
import { el, entries, ready, enhanceServerRows, show, replace } from './rows.js';

const body = document.body;
const table = document.getElementById('listing');
const state = { key: 'name', dir: 1, filter: '' };

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
export { el };

/**
 * Each entry's place in name order, computed once per listing: sorts by size or date then
 * compare numbers only (a collator on every tie made sorting 100,000 entries take seconds).
 */
const collator = new Intl.Collator(lang, { numeric: true, sensitivity: 'base' });
function rank(list) {
  if (list.ranked) return;
  list.slice().sort((a, b) => collator.compare(a.name, b.name)).forEach((e, i) => { e.rank = i; });
  list.ranked = true;
}

function compare(a, b) {
  if (a.dir !== b.dir) return a.dir ? -1 : 1; // folders first, whatever the order
  let c = 0;
  if (state.key === 'size') c = a.size - b.size;
  else if (state.key === 'mtime') c = a.mtime - b.mtime;
  return (c || a.rank - b.rank) * state.dir;
}

/** The entries to show: filtered by name, sorted. */
function view(list) {
  rank(list);
  const f = state.filter.toLocaleLowerCase();
  const out = f ? list.filter((e) => (e.lower ??= e.name.toLocaleLowerCase()).includes(f)) : list.slice();
  return out.sort(compare);
}

function count(total, shown) {
  let text = t('items', total);
  if (state.filter) text += ` · ${t('filtered', shown)}`;
  document.getElementById('count').textContent = text;
}

/** Shows the current sort and filter. Synchronous when the entries are read already. */
function render() {
  const list = ready();
  if (!list) {
    entries(true).then(render);
    return null;
  }
  const shown = view(list);
  show(shown);
  count(list.length, shown.length);
  return shown.length;
}

/** Re-reads the directory (JSON listing) and shows it: how finished uploads appear. */
export async function refresh() {
  const r = await fetch('?json', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!r.ok) return;
  const json = await r.json();
  replace(json.map((e) => ({
    name: e.name, dir: e.type === 'dir', href: e.href, size: e.size, mtime: e.mtime,
  })));
  render();
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
}

function tools() {
  const box = document.getElementById('tools');
  const input = el('input', { type: 'search', id: 'filter', placeholder: t('filter'), autocomplete: 'off' });
  input.setAttribute('aria-label', t('filterLabel'));
  input.setAttribute('aria-controls', 'listing');
  let timer = 0;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      state.filter = input.value;
      await entries(true);
      if (state.filter !== input.value) return; // typed on meanwhile: that render follows
      const n = render();
      if (state.filter) announce(t('filtered', n));
    }, 120);
  });
  box.append(el('div', { class: 'grow' }, input));
}

/** One listener for every copy button, present and future. */
function copyLinks() {
  table.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button.copy');
    if (!b) return;
    const a = b.closest('tr').cells[0].querySelector('a');
    const url = new URL(a.getAttribute('href'), location.href).href;
    const name = a.textContent;
    try {
      await navigator.clipboard.writeText(url);
      announce(t('copied', name));
    } catch {
      announce(`${t('copyFailed')}: ${url}`);
    }
  });
}

function translate() {
  document.documentElement.lang = lang;
  const title = document.getElementById('title');
  const path = decodeURIComponent(location.pathname);
  title.textContent = `${t('indexOf')} ${path}`;
  document.title = title.textContent;
  const home = document.querySelector('#crumbs a[href="/"]');
  if (home) home.textContent = t('home');
  const up = table.querySelector('tbody.up a');
  if (up) up.title = t('parent');
}

sessionStorage.removeItem('ferry-read-token'); // the read token (if any) was accepted
document.documentElement.classList.add('js');
translate();
sortHeaders();
tools();
copyLinks();
enhanceServerRows();
count(Number(document.getElementById('count').dataset.count) || 0, 0);
entries(); // in idle time, so the first sort or filter finds them read
if (body.dataset.tus) {
  import('./upload.js').then((m) => m.init({ refresh, announce, el }));
}
