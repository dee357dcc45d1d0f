// Files from a drop: folders walked recursively (readEntries called until it returns nothing,
// as Chromium hands out 100 entries per call), with the dataTransfer.files fallback.

function readAll(reader) {
  return new Promise((resolve, reject) => {
    const out = [];
    const next = () => reader.readEntries((batch) => {
      if (!batch.length) resolve(out); else { out.push(...batch); next(); }
    }, reject);
    next();
  });
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, rel: `${prefix}${entry.name}` });
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry.createReader())) {
      await walk(child, `${prefix}${entry.name}/`, out);
    }
  }
}

/** `[{file, rel}]` for a DataTransfer; entries must be taken before the first await. */
export async function collectDrop(dt) {
  const entries = [...(dt.items || [])]
    .filter((i) => i.kind === 'file')
    .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  const files = [...(dt.files || [])];
  if (!entries.length || entries.some((e) => !e)) return files.map((f) => ({ file: f, rel: f.name }));
  const out = [];
  for (const e of entries) await walk(e, '', out);
  return out;
}
