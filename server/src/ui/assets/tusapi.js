// The few tus requests the page makes itself (the rest is tus-js-client's): what the server
// offers (OPTIONS, once per page), creation (plain, partial, final), HEAD for the offset. And
// the plan that splits a big file into parts joined by the server (tus concatenation), as
// `ferry put -x` does.

export class HttpError extends Error {
  constructor(status, reason, retryAfter) {
    super(reason || `HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Whether an error is worth retrying by itself: the network, 409 (offset), 423, 429, 460
 * (a chunk damaged on the way: the server discarded it), 5xx. */
export function retryable(err) {
  const s = err.status ?? 0;
  return s === 0 || s === 409 || s === 423 || s === 429 || s === 460 || s >= 500;
}

/** Seconds from a `Retry-After` (delay-seconds or an HTTP date, RFC 9110 §10.2.3). */
export function retryAfter(v) {
  if (!v) return undefined;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, n);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

export async function reason(r) {
  const text = (await r.text().catch(() => '')).trim();
  return text.slice(0, 300) || `${r.status} ${r.statusText}`;
}

async function fail(r) {
  return new HttpError(r.status, await reason(r), retryAfter(r.headers.get('Retry-After')));
}

function b64(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

export function encodeMetadata(pairs) {
  return pairs.map(([k, v]) => `${k} ${b64(v)}`).join(',');
}

let offered = null;

/** The server's extensions and checksum algorithms (OPTIONS, tus core §OPTIONS), asked once
 * per page; nothing is assumed when the answer is not 2xx. */
export async function capabilities(endpoint, headers) {
  if (offered) return offered;
  const r = await fetch(endpoint, { method: 'OPTIONS', headers });
  const list = (h) => (r.headers.get(h) || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const caps = r.ok ? { extensions: list('Tus-Extension'), checksums: r.headers.get('Tus-Checksum-Algorithm') } : null;
  if (caps) offered = caps;
  return caps ?? { extensions: [], checksums: null };
}

/** Largest number of parts per file, and the smallest part (a part is two chunks or more). */
export const PARTS = 4;
export const PART_MIN = 32 * 1024 * 1024;

/** `[start, end)` byte ranges for the parts of a file of `size` bytes: one range unless the
 * server joins unfinished parts (concatenation-unfinished: the final upload is created first
 * and takes the parts' bytes in place, as ferry put does) and the file has room for two. */
export function planParts(size, extensions) {
  const joins = extensions.includes('concatenation') && extensions.includes('concatenation-unfinished');
  const count = joins ? Math.min(PARTS, Math.floor(size / PART_MIN)) : 1;
  if (count < 2) return [[0, size]];
  const base = Math.floor(size / count);
  return Array.from({ length: count }, (_, i) => [i * base, i + 1 === count ? size : (i + 1) * base]);
}

/** POST to the endpoint (tus creation, concatenation): `{url, offset, published}`, the offset
 * `null` when the answer has none. */
export async function createUpload(endpoint, headers, { length, metadata, concat }) {
  const h = { ...headers };
  if (length !== undefined) h['Upload-Length'] = String(length);
  if (metadata) h['Upload-Metadata'] = metadata;
  if (concat) h['Upload-Concat'] = concat;
  const r = await fetch(endpoint, { method: 'POST', headers: h });
  if (!r.ok) throw await fail(r);
  const loc = r.headers.get('Location');
  if (!loc) throw new HttpError(0, 'creation answered without Location');
  const off = r.headers.get('Upload-Offset');
  return {
    url: new URL(loc, new URL(endpoint, location.href)).href,
    offset: off === null ? null : Number(off),
    published: r.headers.get('Ferry-Published'),
  };
}

/** HEAD of an upload: `null` when it is gone (404, 410, 403), else `{offset, published}`
 * (`offset` null for a final upload whose parts are not all complete). */
export async function headUpload(url, headers) {
  const r = await fetch(url, { method: 'HEAD', headers, cache: 'no-store' });
  if (r.status === 404 || r.status === 410 || r.status === 403) return null;
  if (!r.ok) throw new HttpError(r.status, `HEAD ${r.status}`, retryAfter(r.headers.get('Retry-After')));
  const off = r.headers.get('Upload-Offset');
  return { offset: off === null ? null : Number(off), published: r.headers.get('Ferry-Published') };
}
