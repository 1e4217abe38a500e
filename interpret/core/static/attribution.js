
const D = DATA;
const S = {traj: 0, step: 0, isolate: null, playing: null, ready: false};
window.attributionState = S;
const sheets = D.trajectories.map(t => ({obs: [], atlas: []}));

function loadImage(uri) {
  return new Promise((ok, fail) => { const im = new Image(); im.onload = () => ok(im);
    im.onerror = () => fail(new Error('image failed to load')); im.src = uri; });
}
async function loadAll() {
  for (let ti = 0; ti < D.trajectories.length; ti++) {
    const t = D.trajectories[ti];
    for (const uri of t.obsSheets) sheets[ti].obs.push(await loadImage(uri));
    for (const uri of t.atlasSheets) {
      const im = await loadImage(uri);
      const c = document.createElement('canvas'); c.width = im.width; c.height = im.height;
      const cx = c.getContext('2d'); cx.drawImage(im, 0, 0);
      sheets[ti].atlas.push(cx.getImageData(0, 0, im.width, im.height));
    }
  }
}

function drawObs(ctx, size) {
  const im = sheets[S.traj].obs[Math.floor(S.step / D.chunk)];
  const row = S.step % D.chunk;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(im, 0, row * D.obsH, D.obsW, D.obsH, 0, 0, size, size);
}

const small = document.createElement('canvas');
small.width = D.layerW; small.height = D.layerH;
function drawOverlay(canvas, sign) {
  const ctx = canvas.getContext('2d');
  ctx.globalAlpha = 1; drawObs(ctx, canvas.width);
  ctx.fillStyle = 'rgba(255,255,255,0.55)'; ctx.fillRect(0, 0, canvas.width, canvas.height);
  const atlas = sheets[S.traj].atlas[Math.floor(S.step / D.chunk)];
  const H = D.layerH, W = D.layerW, K = D.k + 1, rowPx = 2 * H, width = K * W;
  const top = (S.step % D.chunk) * rowPx + sign * H;
  const sctx = small.getContext('2d');
  const img = sctx.createImageData(W, H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    let r = 0, g = 0, b = 0, a = 0;
    for (let f = 0; f < K; f++) {
      if (S.isolate !== null && S.isolate !== f) continue;
      const m = atlas.data[((top + y) * width + f * W + x) * 4] / 255;
      if (m <= 0) continue;
      const c = D.colors[f]; r += c[0] * m; g += c[1] * m; b += c[2] * m; a += m;
    }
    const o = (y * W + x) * 4;
    if (a > 0) { img.data[o] = r / a; img.data[o + 1] = g / a; img.data[o + 2] = b / a; }
    img.data[o + 3] = Math.sqrt(Math.min(1, a)) * 255;  // sqrt: faint attribution stays visible
  }
  sctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function plotLines(canvas, series, lo, hi, T) {
  const ctx = canvas.getContext('2d'), w = canvas.width, h = canvas.height, pad = 6;
  const X = i => pad + (w - 2 * pad) * (T > 1 ? i / (T - 1) : 0.5);
  const Y = v => h - pad - (h - 2 * pad) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
  for (const [values, color] of series) {
    ctx.strokeStyle = color; ctx.lineWidth = 1.4; ctx.beginPath();
    values.forEach((v, i) => i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v)));
    ctx.stroke();
  }
  return [X, Y];
}
function range(arrays) {
  let lo = Infinity, hi = -Infinity;
  for (const a of arrays) for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [Math.min(lo, 0), Math.max(hi, 0)];
}
function drawTimeline() {
  const t = D.trajectories[S.traj], c = document.getElementById('timeline');
  const ctx = c.getContext('2d'); ctx.clearRect(0, 0, c.width, c.height);
  const [lo, hi] = range([t.values, t.advantages]);
  const [X, Y] = plotLines(c, [[t.values, '#1f77b4'], [t.advantages, '#ff7f0e']], lo, hi, t.T);
  ctx.strokeStyle = '#ccc'; ctx.beginPath(); ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(t.T - 1), Y(0));
  ctx.stroke();
  ctx.fillStyle = '#2ca02c';
  t.rewards.forEach((r, i) => { if (r) { ctx.beginPath(); ctx.moveTo(X(i), 4);
    ctx.lineTo(X(i) - 5, 14); ctx.lineTo(X(i) + 5, 14); ctx.fill(); } });
  ctx.strokeStyle = '#999';
  t.dones.forEach((d, i) => { if (d) { ctx.beginPath(); ctx.moveTo(X(i), 0);
    ctx.lineTo(X(i), c.height); ctx.stroke(); } });
  ctx.strokeStyle = '#d62728'; ctx.lineWidth = 2; ctx.beginPath();
  ctx.moveTo(X(S.step), 0); ctx.lineTo(X(S.step), c.height); ctx.stroke();
}
function drawTotals() {
  const t = D.trajectories[S.traj], c = document.getElementById('totals');
  const ctx = c.getContext('2d'); ctx.clearRect(0, 0, c.width, c.height);
  const series = [];
  for (let f = 0; f <= D.k; f++) {
    if (S.isolate !== null && S.isolate !== f) continue;
    const color = `rgb(${D.colors[f].join(',')})`;
    series.push([t.totals.map(s => s[f][0]), color], [t.totals.map(s => -s[f][1]), color]);
  }
  const [lo, hi] = range(series.map(s => s[0]));
  const [X, Y] = plotLines(c, series, lo, hi, t.T);
  ctx.strokeStyle = '#333'; ctx.lineWidth = 1; ctx.beginPath();
  ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(t.T - 1), Y(0)); ctx.stroke();
  ctx.strokeStyle = '#d62728'; ctx.lineWidth = 2; ctx.beginPath();
  ctx.moveTo(X(S.step), 0); ctx.lineTo(X(S.step), c.height); ctx.stroke();
}

function render() {
  if (!S.ready) return;
  const t = D.trajectories[S.traj];
  drawObs(document.getElementById('obs').getContext('2d'), 256);
  drawOverlay(document.getElementById('pos'), 0);
  drawOverlay(document.getElementById('neg'), 1);
  drawTimeline(); drawTotals();
  document.getElementById('scrub').value = S.step;
  const action = D.actionNames[t.actions[S.step]] ?? t.actions[S.step];
  document.getElementById('info').textContent =
    `step ${S.step} / ${t.T - 1}   value ${t.values[S.step].toFixed(3)}   ` +
    `advantage ${t.advantages[S.step].toFixed(3)}   reward ${t.rewards[S.step]}   ` +
    `action ${action}   level ${t.levelSeeds[S.step]}   ` +
    `completeness error ${t.completeness[S.step].toExponential(1)}`;
}
function seek(step, traj) {
  if (traj !== undefined && traj !== S.traj) {
    S.traj = traj; document.getElementById('traj').value = traj;
    document.getElementById('scrub').max = D.trajectories[traj].T - 1;
  }
  const T = D.trajectories[S.traj].T;
  S.step = Math.max(0, Math.min(T - 1, step)); render();
}
function togglePlay() {
  const button = document.getElementById('play');
  if (S.playing) {
    clearInterval(S.playing); S.playing = null; button.textContent = 'play'; return;
  }
  button.textContent = 'pause';
  S.playing = setInterval(() => {
    if (S.step >= D.trajectories[S.traj].T - 1) togglePlay(); else seek(S.step + 1);
  }, 100);
}

function setup() {
  const sel = document.getElementById('traj');
  D.trajectories.forEach((t, i) => { const o = document.createElement('option');
    o.value = i; o.textContent = `${i} (${t.T} steps)`; sel.appendChild(o); });
  sel.onchange = () => seek(0, Number(sel.value));
  document.getElementById('scrub').max = D.trajectories[0].T - 1;
  document.getElementById('scrub').oninput = e => seek(Number(e.target.value));
  document.getElementById('prev').onclick = () => seek(S.step - 1);
  document.getElementById('next').onclick = () => seek(S.step + 1);
  document.getElementById('play').onclick = togglePlay;
  document.addEventListener('keydown', e => {
    if (e.target.tagName === 'SELECT') return;
    if (e.key === 'ArrowRight') { seek(S.step + 1); e.preventDefault(); }
    else if (e.key === 'ArrowLeft') { seek(S.step - 1); e.preventDefault(); }
    else if (e.key === ' ') { togglePlay(); e.preventDefault(); }
  });
  const tl = document.getElementById('timeline');
  tl.onclick = e => { const r = tl.getBoundingClientRect();
    const T = D.trajectories[S.traj].T;
    seek(Math.round((e.clientX - r.left - 6) / (r.width - 12) * (T - 1))); };
  document.querySelectorAll('.legend-item').forEach(el => {
    el.onmouseenter = () => { S.isolate = Number(el.dataset.feature); render(); };
    el.onmouseleave = () => { S.isolate = null; render(); };
  });
  const bm = document.getElementById('bookmarks');
  if (!D.bookmarks.length) bm.textContent = 'no finished episode with a finite advantage';
  for (const b of D.bookmarks) {
    const button = document.createElement('button');
    button.textContent = `${b.kind === 'failure' ? 'unexpected failure' : 'unexpected success'}` +
      `: trajectory ${b.trajectory}, step ${b.step} (advantage ${b.advantage.toFixed(2)})`;
    button.onclick = () => seek(b.step, b.trajectory);
    bm.appendChild(button);
  }
}
// Deep links: index.html#trajectory=2&step=117 opens that step (the audit links fatal steps).
function seekHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const traj = p.has('trajectory') ? Number(p.get('trajectory')) : undefined;
  if (traj !== undefined && !(traj >= 0 && traj < D.trajectories.length)) return;
  if (p.has('step') || traj !== undefined) seek(Number(p.get('step') || 0), traj);
}
window.addEventListener('hashchange', seekHash);
setup();
loadAll().then(() => {
  S.ready = true; seekHash(); render(); document.body.dataset.ready = '1';
});
