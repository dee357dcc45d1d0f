// The read-token page: takes `#read-token=…` from ferryd's start-up link or the form, keeps it
// in the ferry-read-token cookie (SameSite=Strict; for the session unless "remember"), and
// reloads. Other fragment parameters (the upload token) stay for the listing page.
import { t } from './i18n.js';

const COOKIE = 'ferry-read-token';
const form = document.getElementById('login');
const input = document.getElementById('read-token');
const alert = document.getElementById('login-error');

function store(token, remember) {
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  const age = remember ? '; Max-Age=31536000' : '';
  document.cookie = `${COOKIE}=${encodeURIComponent(token)}; Path=/; SameSite=Strict${age}${secure}`;
  sessionStorage.setItem(COOKIE, 'tried');
  location.reload();
}

document.getElementById('title').textContent = t('readToken');
document.getElementById('why').textContent = t('readNeeded');
document.getElementById('label').textContent = t('readToken');
document.getElementById('remember-label').textContent = t('remember');
document.getElementById('open').textContent = t('open');

const params = new URLSearchParams(location.hash.slice(1));
const given = params.get('read-token');
if (given) {
  params.delete('read-token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  store(given, false);
} else {
  if (sessionStorage.getItem(COOKIE)) {
    // We stored a token and are still asked for one: it was wrong.
    alert.textContent = t('readWrong');
    sessionStorage.removeItem(COOKIE);
    document.cookie = `${COOKIE}=; Path=/; Max-Age=0`;
  }
  input.focus();
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (input.value.trim()) store(input.value.trim(), document.getElementById('remember').checked);
});
