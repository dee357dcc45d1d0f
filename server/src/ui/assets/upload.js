// The upload panel: file and folder buttons, drop anywhere, paste; one row per file with
// status, <progress>, speed, ETA, pause/resume, cancel, retry; an overall line; a few files at
// a time; the token prompt; unfinished uploads from an earlier visit.
import { t, human, duration } from './i18n.js';
import { Upload, pendingUploads } from './uploader.js';
import { collectDrop } from './drop.js';

const PARALLEL = 3;
const TOKEN = 'ferry-upload-token';
const body = document.body;
const ui = body.dataset.ui;
const endpoint = new URL(body.dataset.tus, location.href).href;
const needsToken = body.dataset.token === '1';
const here = (() => {
  try { return decodeURIComponent(location.pathname).replace(/^\/+|\/+$/g, ''); } catch { return ''; }
})();
const uploads = [];
let ctx;
let dom;

function token() {
  return sessionStorage.getItem(TOKEN) || localStorage.getItem(TOKEN);
}

/** `#token=…` from ferryd's start-up link: kept for the session, removed from the address bar. */
function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN, decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search);
}

function tokenForm() {
  const { el } = ctx;
  const input = el('input', { type: 'password', id: 'token', autocomplete: 'off', spellcheck: false });
  const label = el('label', { htmlFor: 'token' }, t('token'));
  const remember = el('input', { type: 'checkbox', id: 'remember' });
  const form = el('form', { id: 'token-form' }, label, el('span', { class: 'grow' }, input),
    el('label', {}, remember, t('remember')), el('button', { type: 'submit', class: 'primary' }, t('tokenSave')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (!v) return;
    sessionStorage.setItem(TOKEN, v);
    if (remember.checked) localStorage.setItem(TOKEN, v); else localStorage.removeItem(TOKEN);
    input.value = '';
    form.hidden = true;
    dom.alert.textContent = '';
    ctx.announce(t('tokenOk'));
    for (const u of uploads) if (u.authFailed) { u.authFailed = false; u.set('queued'); }
    pump();
  });
  form.hidden = !needsToken || !!token();
  return form;
}

function askToken(wrong) {
  sessionStorage.removeItem(TOKEN);
  localStorage.removeItem(TOKEN);
  dom.alert.textContent = wrong ? t('tokenWrong') : t('tokenNeeded');
  dom.form.hidden = false;
  dom.form.querySelector('input').focus();
}

function panel() {
  const { el } = ctx;
  const files = el('input', { type: 'file', multiple: true, hidden: true, id: 'pick-files' });
  const folder = el('input', { type: 'file', hidden: true, id: 'pick-folder' });
  folder.webkitdirectory = true;
  const bFiles = el('button', { type: 'button', class: 'primary', id: 'btn-files' }, t('files'));
  const bFolder = el('button', { type: 'button', id: 'btn-folder' }, t('folder'));
  bFiles.addEventListener('click', () => files.click());
  bFolder.addEventListener('click', () => folder.click());
  for (const input of [files, folder]) {
    input.addEventListener('change', () => {
      add([...input.files].map((f) => ({ file: f, rel: f.webkitRelativePath || f.name })));
      input.value = '';
    });
  }
  dom = {
    alert: el('p', { class: 'alert', role: 'alert', id: 'upload-error' }),
    overall: el('p', { id: 'overall' }),
    pending: el('div', { id: 'pending', hidden: true }),
    queue: el('ul', { id: 'queue' }),
  };
  dom.form = tokenForm();
  const section = el('section', { id: 'upload' },
    el('h2', { class: 'visually-hidden', id: 'upload-h' }, t('upload')),
    el('div', { class: 'actions' }, bFiles, bFolder, files, folder, el('span', { class: 'hint' }, t('dropHint'))),
    dom.form, dom.alert, dom.pending, dom.overall, dom.queue);
  section.setAttribute('aria-labelledby', 'upload-h');
  document.getElementById('tools').before(section);
  if (needsToken && !token()) askToken(false);
}

function showPending() {
  const list = pendingUploads(endpoint).filter((p) => !uploads.some((u) => u.key === p.key));
  dom.pending.hidden = list.length === 0;
  if (!list.length) return;
  const ul = ctx.el('ul');
  for (const p of list) ul.append(ctx.el('li', {}, `${p.target} (${human(p.offset || 0)} / ${human(p.size)})`));
  dom.pending.replaceChildren(ctx.el('p', {}, t('pending', list.length)), ul);
}

/** Queues `{file, rel}` items: `rel` is the path inside the dropped or picked folder. */
function add(items) {
  for (const { file, rel } of items) {
    const parts = rel.split('/').filter(Boolean);
    parts.pop();
    const dir = [here, ...parts].filter(Boolean).join('/');
    const u = new Upload(file, dir, {
      endpoint, token, workerUrl: `${ui}hash-worker.js`, sumWorkerUrl: `${ui}sum-worker.js`, onChange: update, onDone: done,
    });
    u.rel = rel;
    if (uploads.some((o) => o.key === u.key && !o.finished)) continue; // already queued
    uploads.push(u);
    dom.queue.append(row(u));
  }
  showPending();
  pump();
}

function row(u) {
  const { el } = ctx;
  const status = el('span', { class: 'st' }, t('queued'));
  const progress = el('progress', { max: u.file.size || 1, value: 0 });
  progress.setAttribute('aria-label', u.rel);
  const pause = el('button', { type: 'button' }, t('pause'));
  const cancel = el('button', { type: 'button' }, t('cancel'));
  const retry = el('button', { type: 'button', hidden: true }, t('retry'));
  pause.addEventListener('click', () => {
    if (u.status === 'paused') { u.set('queued'); pump(); } else u.pause();
  });
  cancel.addEventListener('click', () => u.cancel());
  retry.addEventListener('click', () => { u.attempt = 0; u.set('queued'); pump(); });
  const li = el('li', {}, el('span', { class: 'name' }, u.rel), el('span', { class: 'btns' }, pause, cancel, retry),
    status, el('span', { class: 'st speed' }), progress);
  u.view = { li, status, progress, pause, cancel, retry, speed: li.querySelector('.speed') };
  return li;
}

function statusText(u) {
  switch (u.status) {
    case 'hashing': return t('hashing', u.hashed);
    case 'retrying': return t('retrying', Math.max(1, Math.ceil((u.until - Date.now()) / 1000)));
    case 'failed': return t('failed', u.error?.message || '?');
    case 'uploading': case 'resuming': return `${t(u.status)} ${t('sent', human(u.sent), human(u.file.size))}`;
    case 'paused': return `${t('paused')} ${t('sent', human(u.sent), human(u.file.size))}`;
    default: return t(u.status);
  }
}

function update(u) {
  const v = u.view;
  const was = v.status.dataset.s;
  v.status.textContent = statusText(u);
  v.status.dataset.s = u.status;
  v.status.className = `st ${{ done: 'ok', instant: 'ok', failed: 'err', retrying: 'warn', offline: 'warn' }[u.status] || ''}`;
  v.progress.value = u.status === 'hashing' ? (u.hashed * (u.file.size || 1)) / 100 : u.sent;
  const moving = u.status === 'uploading' && u.speed > 0;
  v.speed.textContent = moving ? `${human(Math.round(u.speed))}/s · ${t('eta', duration((u.file.size - u.sent) / u.speed))}` : '';
  v.pause.textContent = u.status === 'paused' ? t('resume') : t('pause');
  v.pause.hidden = u.finished;
  v.cancel.hidden = u.finished;
  v.retry.hidden = u.status !== 'failed' || u.authFailed;
  if (was !== u.status && ['done', 'instant', 'failed', 'paused', 'offline'].includes(u.status)) {
    ctx.announce(`${u.rel}: ${statusText(u)}`);
  }
  if (u.authFailed && was !== u.status) askToken(true);
  overall();
}

function overall() {
  const live = uploads.filter((u) => u.status !== 'cancelled');
  const finished = live.filter((u) => u.status === 'done' || u.status === 'instant').length;
  const active = live.filter((u) => u.active).length;
  const speed = live.reduce((s, u) => s + (u.status === 'uploading' ? u.speed || 0 : 0), 0);
  let text = live.length ? t('overall', finished, live.length, active) : '';
  if (speed > 0) text += ` · ${human(Math.round(speed))}/s`;
  dom.overall.textContent = text;
}

let refreshing = 0;
function done(u) {
  pump();
  clearTimeout(refreshing);
  refreshing = setTimeout(() => ctx.refresh(), 150);
  const live = uploads.filter((x) => x.status !== 'cancelled');
  if (live.length && live.every((x) => x.finished) && live.some((x) => x.status !== 'failed')) {
    ctx.announce(t('allDone', live.length));
  }
  showPending();
  return u;
}

/** Starts queued uploads while fewer than PARALLEL are active. */
function pump() {
  if (needsToken && !token()) return;
  let active = uploads.filter((u) => u.active).length;
  for (const u of uploads) {
    if (active >= PARALLEL) break;
    if (u.status === 'queued') { active += 1; u.start(); }
  }
}

export function init(context) {
  ctx = context;
  tokenFromFragment();
  panel();
  showPending();
  window.addEventListener('beforeunload', (e) => {
    if (uploads.some((u) => u.active)) { e.preventDefault(); e.returnValue = t('leave'); }
  });
  window.addEventListener('offline', () => { for (const u of uploads) u.offline(); });
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) add(files.map((f) => ({ file: f, rel: f.name })));
  });
  body.dataset.drop = t('drop');
  let depth = 0;
  const isFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  document.addEventListener('dragenter', (e) => { if (isFiles(e)) { depth += 1; body.classList.add('dragging'); } });
  document.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) body.classList.remove('dragging'); });
  document.addEventListener('dragover', (e) => { if (isFiles(e)) e.preventDefault(); });
  document.addEventListener('drop', async (e) => {
    if (!isFiles(e)) return;
    e.preventDefault();
    depth = 0;
    body.classList.remove('dragging');
    add(await collectDrop(e.dataTransfer));
  });
  window.ferryUploads = uploads; // for tests and the curious
}
