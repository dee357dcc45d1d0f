// The listing's rows. The server sends each chunk of CHUNK rows as its own <tbody>, small rows
// of the shape `<tr><td><a href>name</a><td title=bytes>1.5 KiB<td>YYYY-MM-DD HH:MM:SS` (UTC).
// Nothing here walks a large directory's rows at once: a <tbody> is decorated (local date,
// exact bytes, actions) when it comes near the viewport; the entries are read from the rows a
// <tbody> per step in idle time; a sorted or filtered view is a compact array shown through
// empty <tbody> placeholders that are filled as they scroll into view. Names are inserted as
// text, never as HTML.
import { t, human, localDate } from './i18n.js';

export const CHUNK = 256;
const table = document.getElementById('listing');
const upBody = table.querySelector('tbody.up');

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k in e && k !== 'list') e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** The server's row groups (hidden, never removed, while a view is shown) and the view's. */
const serverBodies = [...table.tBodies].filter((tb) => tb !== upBody);
let viewBodies = [];

/** `YYYY-MM-DD HH:MM:SS` (UTC), as the server writes it, to seconds since the epoch. */
function utc(s) {
  const n = (a, b) => Number(s.slice(a, b));
  return Date.UTC(n(0, 4), n(5, 7) - 1, n(8, 10), n(11, 13), n(14, 16), n(17, 19)) / 1000;
}

/**
 * The entries of one server-rendered <tbody>, parsed once (before it is decorated). Walks
 * siblings and reads text nodes: collections (`rows`, `cells`) and `href` cost several times
 * more over 100,000 rows. A folder's link text ends in `/`, which no file name can.
 */
const parsed = new WeakMap();
function entriesOf(tb) {
  let list = parsed.get(tb);
  if (list) return list;
  list = [];
  for (let tr = tb.firstElementChild; tr; tr = tr.nextElementSibling) {
    const n = tr.firstElementChild;
    const s = n.nextElementSibling;
    const text = n.firstElementChild.textContent;
    const dir = text.endsWith('/');
    list.push({
      name: dir ? text.slice(0, -1) : text,
      dir,
      size: dir ? 0 : Number(s.getAttribute('title')),
      mtime: utc(s.nextElementSibling.firstChild.data),
    });
  }
  parsed.set(tb, list);
  return list;
}

/** The link to an entry, as the server writes it (RFC 3986 unreserved characters kept). */
export function hrefOf(e) {
  e.href ??= encodeURIComponent(e.name).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) + (e.dir ? '/' : '');
  return e.href;
}

let all = null;
let reading = null;
let hurry = false;
let generation = 0;

function later(step) {
  if (hurry || !window.requestIdleCallback) setTimeout(() => step(null), 0);
  else requestIdleCallback(step, { timeout: 1000 });
}

/**
 * Every entry of the directory. Read from the rows a <tbody> per step while the page is idle;
 * `now` (someone sorts or filters) switches to short steps that do not wait for idle time.
 * Small directories are read at once, so their sort and filter answer synchronously.
 */
export function entries(now = false) {
  if (now) hurry = true;
  reading ??= new Promise((done) => {
    const mine = generation;
    const bodies = serverBodies;
    const out = [];
    let i = 0;
    const step = (deadline) => {
      if (mine !== generation) return; // replaced by a fresh listing meanwhile
      const until = performance.now() + 12;
      do {
        if (i === bodies.length) {
          all = out;
          done(out);
          return;
        }
        for (const e of entriesOf(bodies[i])) out.push(e);
        i += 1;
      } while (bodies.length <= 4 || (deadline ? deadline.timeRemaining() > 1 : performance.now() < until));
      later(step);
    };
    if (bodies.length <= 4) step(null);
    else later(step);
  });
  return reading;
}

/** The entries if they are all read already, else `null`. */
export const ready = () => all;

/** Adds what the script knows to a row: classes, local date, exact bytes, phone line, actions. */
function decorate(tr, e) {
  const [n, s, m] = tr.cells;
  e.href ??= n.firstElementChild.getAttribute('href');
  n.className = 'n';
  s.className = 's';
  m.className = 'm';
  const when = localDate(e.mtime);
  n.append(el('span', { class: 'sub' }, e.dir ? when : `${human(e.size)} · ${when}`));
  if (!e.dir) s.title = t('bytes', e.size);
  m.replaceChildren(el('time', { dateTime: new Date(e.mtime * 1000).toISOString() }, when));
  const actions = el('td', { class: 'a' });
  if (!e.dir) {
    const dl = el('a', { href: hrefOf(e), class: 'button', download: e.name, title: t('download') }, t('download'));
    dl.setAttribute('aria-label', `${t('download')} ${e.name}`);
    actions.append(dl, ' ');
  }
  const copy = el('button', { type: 'button', class: 'copy', title: t('copyLink') }, t('copyLink'));
  copy.setAttribute('aria-label', `${t('copyLink')}: ${e.name}`);
  actions.append(copy);
  tr.append(actions);
}

/** A row as the server would have written it. */
function bare(e) {
  const a = el('a', { href: hrefOf(e) }, e.dir ? `${e.name}/` : e.name);
  return el('tr', {}, el('td', {}, a), el('td', {}, e.dir ? '-' : human(e.size)), el('td'));
}

/** View placeholders and the entries each is to show. */
const pending = new WeakMap();

function fill(tb) {
  const list = pending.get(tb);
  if (list) {
    pending.delete(tb);
    tb.style.height = '';
    tb.append(...list.map(bare));
  }
  const es = list ?? entriesOf(tb);
  let tr = tb.firstElementChild;
  for (const e of es) {
    decorate(tr, e);
    tr = tr.nextElementSibling;
  }
}

const near = new IntersectionObserver((items) => {
  for (const { target, isIntersecting } of items) {
    if (!isIntersecting) continue;
    near.unobserve(target);
    fill(target);
  }
}, { rootMargin: '1500px 0px' });

/** Decorates the server's rows: a small directory at once, a large one as it scrolls by. */
export function enhanceServerRows() {
  if (upBody) upBody.rows[0].append(el('td', { class: 'a' }));
  if (serverBodies.length <= 4) serverBodies.forEach(fill);
  else serverBodies.forEach((tb) => near.observe(tb));
}

/** A row's height, measured once on a shown row: the estimate for placeholders. */
let measured = 0;
function rowHeight() {
  const tb = [...viewBodies, ...serverBodies].find((b) => !b.hidden && b.firstElementChild);
  measured ||= tb?.firstElementChild.getBoundingClientRect().height ?? 0;
  return measured || 36;
}

/** Shows `list` in place of the current rows; the first <tbody> at once, the rest as needed. */
export function show(list) {
  const h = rowHeight();
  const bodies = [];
  for (let i = 0; i < list.length; i += CHUNK) {
    const slice = list.slice(i, i + CHUNK);
    const tb = document.createElement('tbody');
    tb.style.height = `${slice.length * h}px`;
    pending.set(tb, slice);
    bodies.push(tb);
  }
  // Hiding the server's rows is cheap; removing 100,000 of them took over a second. A small
  // directory's are removed, so the page holds only the rows it shows.
  const small = serverBodies.length <= 4;
  for (const tb of serverBodies) {
    if (small) tb.remove();
    else tb.hidden = true;
  }
  for (const tb of viewBodies) {
    near.unobserve(tb);
    tb.remove();
  }
  viewBodies = bodies;
  table.append(...bodies);
  if (bodies.length) fill(bodies[0]);
  for (const tb of bodies.slice(1)) near.observe(tb);
}

/** Replaces the entries with a fresh listing (the JSON form); the caller shows them. */
export function replace(list) {
  generation += 1;
  all = list;
  reading = Promise.resolve(list);
}
