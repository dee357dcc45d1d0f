// Strings in English and Simplified Chinese, chosen from navigator.language.
const en = {
  home: 'Home', indexOf: 'Index of', name: 'Name', size: 'Size', modified: 'Modified',
  actions: 'Actions', parent: 'Parent folder', filter: 'Filter', filterLabel: 'Filter by name',
  items: (n) => `${n.toLocaleString()} item${n === 1 ? '' : 's'}`,
  showing: (a, b) => `showing ${a.toLocaleString()} of ${b.toLocaleString()}`,
  showMore: (n) => `Show ${n.toLocaleString()} more`,
  download: 'Download', copyLink: 'Copy link', copied: (n) => `Link to ${n} copied`,
  copyFailed: 'Could not copy the link', bytes: (n) => `${n.toLocaleString()} bytes`,
  sortBy: (c) => `Sort by ${c}`, sorted: (c, d) => `Sorted by ${c}, ${d}`,
  asc: 'ascending', desc: 'descending', filtered: (n) => `${n.toLocaleString()} matching`,
  upload: 'Upload', files: 'Upload files', folder: 'Upload folder',
  dropHint: 'or drop files and folders anywhere, or paste', drop: 'Drop to upload here',
  queued: 'queued', checking: 'checking…', hashing: (p) => `hashing ${p}%`,
  instant: 'already on the server', uploading: 'uploading', paused: 'paused',
  retrying: (s) => `retrying in ${s} s`, offline: 'offline, waiting for the network',
  done: 'done', failed: (r) => `failed: ${r}`, cancelled: 'cancelled', resuming: 'resuming',
  pause: 'Pause', resume: 'Resume', cancel: 'Cancel', retry: 'Retry',
  overall: (d, t, a) => `${d} of ${t} files done${a ? `, ${a} active` : ''}`,
  allDone: (n) => `All ${n} uploads finished`,
  eta: (s) => `${s} left`, leave: 'Uploads are still running. Leave the page?',
  token: 'Upload token', tokenSave: 'Use token', remember: 'Remember on this device',
  tokenNeeded: 'This server needs an upload token to accept files.',
  tokenWrong: 'The upload token was refused. Check it and enter it again.',
  tokenOk: 'Token accepted', forget: 'Forget token',
  pending: (n) => `${n} unfinished upload${n === 1 ? '' : 's'} from an earlier visit; pick the same file again to resume:`,
  sent: (a, b) => `${a} of ${b}`, uploadedTo: (n) => `${n} uploaded`,
  readToken: 'Read token', readNeeded: 'This server needs a read token to show its files.',
  readWrong: 'The read token was refused. Check it and enter it again.',
  open: 'Open',
};
const zh = {
  home: '首页', indexOf: '索引', name: '名称', size: '大小', modified: '修改时间',
  actions: '操作', parent: '上级目录', filter: '筛选', filterLabel: '按名称筛选',
  items: (n) => `${n.toLocaleString()} 项`,
  showing: (a, b) => `显示 ${a.toLocaleString()} / ${b.toLocaleString()}`,
  showMore: (n) => `再显示 ${n.toLocaleString()} 项`,
  download: '下载', copyLink: '复制链接', copied: (n) => `已复制 ${n} 的链接`,
  copyFailed: '无法复制链接', bytes: (n) => `${n.toLocaleString()} 字节`,
  sortBy: (c) => `按${c}排序`, sorted: (c, d) => `已按${c}${d}排序`,
  asc: '升序', desc: '降序', filtered: (n) => `${n.toLocaleString()} 项匹配`,
  upload: '上传', files: '上传文件', folder: '上传文件夹',
  dropHint: '或将文件和文件夹拖到页面任意位置，或粘贴', drop: '松开即上传到此处',
  queued: '排队中', checking: '检查中…', hashing: (p) => `计算哈希 ${p}%`,
  instant: '秒传：服务器上已有此文件', uploading: '上传中', paused: '已暂停',
  retrying: (s) => `${s} 秒后重试`, offline: '网络已断开，等待恢复',
  done: '完成', failed: (r) => `失败：${r}`, cancelled: '已取消', resuming: '正在续传',
  pause: '暂停', resume: '继续', cancel: '取消', retry: '重试',
  overall: (d, t, a) => `已完成 ${d} / ${t} 个文件${a ? `，${a} 个进行中` : ''}`,
  allDone: (n) => `全部 ${n} 个上传已完成`,
  eta: (s) => `剩余 ${s}`, leave: '仍有上传在进行，确定离开？',
  token: '上传令牌', tokenSave: '使用令牌', remember: '在此设备上记住',
  tokenNeeded: '此服务器需要上传令牌才能接收文件。',
  tokenWrong: '上传令牌被拒绝，请检查后重新输入。',
  tokenOk: '令牌已接受', forget: '忘记令牌',
  pending: (n) => `上次有 ${n} 个未完成的上传；再次选择同一文件即可续传：`,
  sent: (a, b) => `${a} / ${b}`, uploadedTo: (n) => `${n} 已上传`,
  readToken: '读取令牌', readNeeded: '此服务器需要读取令牌才能显示文件。',
  readWrong: '读取令牌被拒绝，请检查后重新输入。',
  open: '打开',
};

export const lang = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
const table = lang === 'zh-CN' ? zh : en;

/** The string `key`; functions are called with `args`. */
export function t(key, ...args) {
  const v = table[key] ?? en[key] ?? key;
  return typeof v === 'function' ? v(...args) : v;
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
/** `1.5 MiB`, as the server renders it. */
export function human(n) {
  if (n < 1024) return `${n} B`;
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u += 1; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

/** `1:05` / `2:03:04` for a number of seconds. */
export function duration(s) {
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const dateFmt = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' });
export function localDate(secs) {
  return dateFmt.format(new Date(secs * 1000));
}
