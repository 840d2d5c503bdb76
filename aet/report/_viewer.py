"""The report page's style sheet and script: an interactive 3D view of the atomic model and an
interactive slice view of the volume, drawn with the plain 2D canvas (no WebGL, no library, no
network), so the page works offline and in a browser without a GPU.

The atoms are drawn back to front (painter's algorithm) as shaded disc sprites, one per
species colour, under an orthographic projection; drag rotates, the wheel zooms. The volume is
embedded as 8-bit samples (base64) and drawn slice by slice through a grey look-up table with
a power-law stretch. Both read their data from ``<script type="application/json">`` blocks
written by :mod:`aet.report`.
"""

CSS = r"""
:root { --fg:#1d1d1f; --muted:#5b5b66; --line:#d9d9e0; --bg2:#f6f6f9; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); max-width: 1180px; margin: 1.5em auto; padding: 0 1em;
       line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid var(--line);
     padding-bottom: 0.2em; }
p.lead { font-size: 1.05em; color: var(--muted); margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.95em; }
th, td { padding: 0.28em 0.8em; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.final td { font-weight: 600; }
ul.facts { padding-left: 1.2em; }
ul.facts li { margin: 0.2em 0; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); }
figcaption { color: var(--muted); margin-top: 0.4em; font-size: 0.95em; }
.viewer { border: 1px solid var(--line); background: #fff; border-radius: 4px;
          padding: 0.5em; }
.viewer canvas { display: block; touch-action: none; }
#atoms3d { width: 100%; height: 560px; cursor: grab; background: #fff; }
#atoms3d:active { cursor: grabbing; }
.controls { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center;
            margin: 0.5em 0.2em 0.2em; font-size: 0.92em; }
.controls button { font: inherit; padding: 0.15em 0.7em; border: 1px solid #b8b8c4;
                   background: var(--bg2); border-radius: 3px; cursor: pointer; }
.controls label { white-space: nowrap; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%;
          vertical-align: -0.1em; margin-right: 0.25em; border: 1px solid rgba(0,0,0,0.35); }
.status { color: var(--muted); font-size: 0.9em; min-height: 1.3em; margin: 0.2em; }
.slices { display: flex; flex-wrap: wrap; gap: 1em; }
.slice { flex: 1 1 320px; }
.slice canvas { width: 100%; aspect-ratio: 1 / 1; background: #fff; }
.slice .controls { margin: 0.2em 0; }
.slice input[type=range] { flex: 1 1 auto; }
.note { color: var(--muted); font-size: 0.9em; }
"""

JS = r"""
(function () {
"use strict";

function byId(id) { return document.getElementById(id); }
function readJSON(id) { var el = byId(id); return el ? JSON.parse(el.textContent) : null; }

function hexToRgb(h) {
  var v = parseInt(h.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
function mix(rgb, t, to) {  // blend towards `to` (0..255) by t
  return "rgb(" + rgb.map(function (c) { return Math.round(c + (to - c) * t); }).join(",") + ")";
}

function setupCanvas(canvas) {
  var dpr = window.devicePixelRatio || 1;
  var r = canvas.getBoundingClientRect();
  var w = Math.max(50, Math.round(r.width)), h = Math.max(50, Math.round(r.height));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  var ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx: ctx, w: w, h: h };
}

// ---------------------------------------------------------------- 3D atomic model
function matMul(a, b) {
  var o = new Array(9);
  for (var i = 0; i < 3; i++) for (var j = 0; j < 3; j++) {
    o[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
  }
  return o;
}
function rotX(t) { var c = Math.cos(t), s = Math.sin(t); return [1, 0, 0, 0, c, -s, 0, s, c]; }
function rotY(t) { var c = Math.cos(t), s = Math.sin(t); return [c, 0, s, 0, 1, 0, -s, 0, c]; }
var VIEWS = {
  // rows: screen x (right), screen y (up), towards the viewer
  z: [1, 0, 0, 0, 1, 0, 0, 0, 1],
  y: [1, 0, 0, 0, 0, -1, 0, 1, 0],
  x: [0, 0, -1, 0, 1, 0, 1, 0, 0]
};

function sprite(hex, px) {
  var c = document.createElement("canvas");
  c.width = c.height = px;
  var g = c.getContext("2d"), r = px / 2, rgb = hexToRgb(hex);
  var grad = g.createRadialGradient(0.68 * r, 0.62 * r, 0.08 * r, r, r, r);
  grad.addColorStop(0, mix(rgb, 0.65, 255));
  grad.addColorStop(0.45, mix(rgb, 0.0, 0));
  grad.addColorStop(1, mix(rgb, 0.55, 0));
  g.fillStyle = grad;
  g.beginPath(); g.arc(r, r, r - 1, 0, 2 * Math.PI); g.fill();
  g.lineWidth = Math.max(1, px / 40);
  g.strokeStyle = mix(rgb, 0.7, 0);
  g.stroke();
  return c;
}

function AtomView(data) {
  var canvas = byId("atoms3d"), status = byId("atoms3d-status");
  var n = data.kind.length, xyz = data.xyz, kind = data.kind;
  var centre = [0, 0, 0], rmax = 1e-9;
  for (var i = 0; i < n; i++) for (var a = 0; a < 3; a++) centre[a] += xyz[3 * i + a] / n;
  for (i = 0; i < n; i++) {
    var dx = xyz[3 * i] - centre[0], dy = xyz[3 * i + 1] - centre[1],
        dz = xyz[3 * i + 2] - centre[2];
    rmax = Math.max(rmax, Math.sqrt(dx * dx + dy * dy + dz * dz));
  }
  var sprites = data.colours.map(function (c) { return sprite(c, 96); });
  var visible = data.elements.map(function () { return true; });
  var initial = matMul(rotX(0.35), rotY(-0.5));
  var state = { R: initial.slice(), zoom: 1, size: 1 };
  var order = new Int32Array(n), sx = new Float32Array(n), sy = new Float32Array(n),
      sz = new Float32Array(n), drawn = [], scale = 1, pending = false;

  function draw() {
    pending = false;
    var s = setupCanvas(canvas), ctx = s.ctx, R = state.R;
    ctx.clearRect(0, 0, s.w, s.h);
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, s.w, s.h);
    var rad = data.radii_A.map(function (r) { return r * state.size; });
    scale = state.zoom * 0.46 * Math.min(s.w, s.h) / (rmax + Math.max.apply(null, rad));
    var cx = s.w / 2, cy = s.h / 2, zmin = Infinity, zmax = -Infinity, m = 0;
    for (var i = 0; i < n; i++) {
      if (!visible[kind[i]]) continue;
      var x = xyz[3 * i] - centre[0], y = xyz[3 * i + 1] - centre[1],
          z = xyz[3 * i + 2] - centre[2];
      sx[i] = cx + scale * (R[0] * x + R[1] * y + R[2] * z);
      sy[i] = cy - scale * (R[3] * x + R[4] * y + R[5] * z);
      sz[i] = R[6] * x + R[7] * y + R[8] * z;
      zmin = Math.min(zmin, sz[i]); zmax = Math.max(zmax, sz[i]);
      order[m++] = i;
    }
    var idx = Array.prototype.slice.call(order.subarray(0, m));
    idx.sort(function (p, q) { return sz[p] - sz[q]; });  // far first
    var span = zmax - zmin || 1;
    for (var k = 0; k < idx.length; k++) {
      i = idx[k];
      var r = rad[kind[i]] * scale;
      ctx.drawImage(sprites[kind[i]], sx[i] - r, sy[i] - r, 2 * r, 2 * r);
      var fog = 0.45 * (1 - (sz[i] - zmin) / span);  // depth cue: far atoms paler
      if (fog > 0.02) {
        ctx.fillStyle = "rgba(255,255,255," + fog.toFixed(3) + ")";
        ctx.beginPath(); ctx.arc(sx[i], sy[i], r, 0, 2 * Math.PI); ctx.fill();
      }
    }
    drawn = idx;
    drawAxes(ctx, s, R);
    drawScaleBar(ctx, s);
    canvas.setAttribute("data-atoms-drawn", String(idx.length));
  }

  function drawAxes(ctx, s, R) {
    var ox = 58, oy = s.h - 58, L = 38;
    var axes = [["x", "#c0392b"], ["y (tilt axis)", "#1e8449"], ["z (beam)", "#1f4e9c"]];
    var items = axes.map(function (a, j) {
      return { name: a[0], col: a[1], x: R[j], y: R[3 + j], z: R[6 + j] };
    }).sort(function (p, q) { return p.z - q.z; });
    ctx.lineWidth = 2.5; ctx.font = "13px sans-serif"; ctx.textBaseline = "middle";
    items.forEach(function (a) {
      ctx.strokeStyle = a.col; ctx.fillStyle = a.col;
      ctx.beginPath(); ctx.moveTo(ox, oy); ctx.lineTo(ox + L * a.x, oy - L * a.y); ctx.stroke();
      ctx.fillText(a.name, ox + (L + 8) * a.x - (a.x < -0.3 ? 30 : 0), oy - (L + 8) * a.y);
    });
  }

  function drawScaleBar(ctx, s) {
    var nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], len = nice[0];
    for (var j = 0; j < nice.length; j++) if (nice[j] * scale <= 0.25 * s.w) len = nice[j];
    var x1 = s.w - 20, x0 = x1 - len * scale, y = s.h - 22;
    ctx.strokeStyle = "#222"; ctx.lineWidth = 3;
    ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
    ctx.fillStyle = "#222"; ctx.font = "13px sans-serif"; ctx.textAlign = "center";
    ctx.fillText(len + " Å", (x0 + x1) / 2, y - 10); ctx.textAlign = "start";
  }

  function request() { if (!pending) { pending = true; window.requestAnimationFrame(draw); } }

  function pick(px, py) {
    for (var k = drawn.length - 1; k >= 0; k--) {
      var i = drawn[k], r = data.radii_A[kind[i]] * state.size * scale;
      var dx = px - sx[i], dy = py - sy[i];
      if (dx * dx + dy * dy <= r * r) return i;
    }
    return -1;
  }

  var drag = null;
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (drag) {
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      drag = { x: e.clientX, y: e.clientY };
      state.R = matMul(matMul(rotX(0.01 * dy), rotY(0.01 * dx)), state.R);
      request();
      return;
    }
    var b = canvas.getBoundingClientRect(), i = pick(e.clientX - b.left, e.clientY - b.top);
    status.textContent = i < 0 ? "" : data.elements[kind[i]] + " atom " + i + " at (" +
      [0, 1, 2].map(function (a) { return xyz[3 * i + a].toFixed(2); }).join(", ") + ") Å";
  });
  function end(e) { drag = null; }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    state.zoom = Math.min(20, Math.max(0.2, state.zoom * Math.exp(-0.0015 * e.deltaY)));
    request();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () {
    state.R = initial.slice(); state.zoom = 1; request();
  });
  document.querySelectorAll("[data-view]").forEach(function (b) {
    b.addEventListener("click", function () {
      var v = b.getAttribute("data-view");
      state.R = (v === "reset" ? initial : VIEWS[v]).slice();
      if (v === "reset") state.zoom = 1;
      request();
    });
  });
  document.querySelectorAll("input[data-species]").forEach(function (cb) {
    cb.addEventListener("change", function () {
      visible[+cb.getAttribute("data-species")] = cb.checked; request();
    });
  });
  var sizeInput = byId("atoms3d-size");
  if (sizeInput) sizeInput.addEventListener("input", function () {
    state.size = +sizeInput.value; request();
  });
  window.addEventListener("resize", request);
  draw();
}

// ---------------------------------------------------------------- volume slices
function decode(b64) {
  var s = atob(b64), out = new Uint8Array(s.length);
  for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function SliceViews(vol, atoms) {
  var nz = vol.shape[0], ny = vol.shape[1], nx = vol.shape[2], v = decode(vol.data_b64);
  var coords = [0, 1, 2].map(function (a) {
    var c = new Float64Array(vol.shape[a]);
    for (var i = 0; i < c.length; i++) c[i] = vol.origin_A[a] + i * vol.voxel_A;
    return c;
  });
  var pos = { z: nz >> 1, y: ny >> 1, x: nx >> 1 },
      state = { gamma: vol.gamma, atoms: true, slab: vol.slab_A };
  // plane: fixed axis, (horizontal axis, vertical axis) in (z, y, x) index order
  var planes = [
    { id: "xy", fixed: "z", h: 2, v: 1, hl: "x (Å)", vl: "y (Å)" },
    { id: "xz", fixed: "y", h: 2, v: 0, hl: "x (Å)", vl: "z (Å)" },
    { id: "yz", fixed: "x", h: 1, v: 0, hl: "y (Å)", vl: "z (Å)" }
  ];
  var axisIndex = { z: 0, y: 1, x: 2 }, lut = new Uint8ClampedArray(256);
  var sprites = atoms ? atoms.colours : [];
  function makeLut() {
    for (var i = 0; i < 256; i++) lut[i] = Math.round(255 * Math.pow(i / 255, state.gamma));
  }
  function value(iz, iy, ix) { return v[(iz * ny + iy) * nx + ix]; }

  function drawPlane(p) {
    var canvas = byId("slice-" + p.id), s = setupCanvas(canvas), ctx = s.ctx;
    var W = vol.shape[p.h], H = vol.shape[p.v], fi = axisIndex[p.fixed], k = pos[p.fixed];
    var img = new ImageData(W, H), d = img.data, cf = coords[fi];
    // the maximum over the planes within ±slab of this one (0: the plane alone)
    var k0 = k, k1 = k;
    while (k0 > 0 && cf[k] - cf[k0 - 1] <= state.slab + 1e-9) k0--;
    while (k1 < cf.length - 1 && cf[k1 + 1] - cf[k] <= state.slab + 1e-9) k1++;
    for (var r = 0; r < H; r++) for (var c = 0; c < W; c++) {
      var ijk = [0, 0, 0]; ijk[p.h] = c; ijk[p.v] = H - 1 - r;  // vertical axis up
      var best = 0;
      for (var kk = k0; kk <= k1; kk++) {
        ijk[fi] = kk;
        var val = value(ijk[0], ijk[1], ijk[2]);
        if (val > best) best = val;
      }
      var g = lut[best], o = 4 * (r * W + c);
      d[o] = d[o + 1] = d[o + 2] = g; d[o + 3] = 255;
    }
    var off = document.createElement("canvas"); off.width = W; off.height = H;
    off.getContext("2d").putImageData(img, 0, 0);
    var left = 46, bottom = 34, top = 8, right = 8;
    var size = Math.min(s.w - left - right, s.h - top - bottom);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, s.w, s.h);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, left, top, size, size * H / W);
    var ph = size * H / W, ch = coords[p.h], cv = coords[p.v], vx = vol.voxel_A;
    var h0 = ch[0] - vx / 2, h1 = ch[ch.length - 1] + vx / 2;
    var v0 = cv[0] - vx / 2, v1 = cv[cv.length - 1] + vx / 2;
    function X(u) { return left + size * (u - h0) / (h1 - h0); }
    function Y(u) { return top + ph * (1 - (u - v0) / (v1 - v0)); }
    // crosshairs: where the other two planes cut this one
    ctx.lineWidth = 1; ctx.setLineDash([4, 4]); ctx.strokeStyle = "rgba(255,80,80,0.7)";
    var hp = coords[p.h][pos["zyx"[p.h]]], vp = coords[p.v][pos["zyx"[p.v]]];
    ctx.beginPath(); ctx.moveTo(X(hp), top); ctx.lineTo(X(hp), top + ph);
    ctx.moveTo(left, Y(vp)); ctx.lineTo(left + size, Y(vp)); ctx.stroke(); ctx.setLineDash([]);
    if (atoms && state.atoms) {
      var here = coords[fi][k], half = Math.max(state.slab, vol.voxel_A / 2);
      for (var i = 0; i < atoms.kind.length; i++) {
        var q = [atoms.xyz[3 * i + 2], atoms.xyz[3 * i + 1], atoms.xyz[3 * i]];  // (z, y, x)
        if (Math.abs(q[fi] - here) > half) continue;
        ctx.strokeStyle = sprites[atoms.kind[i]]; ctx.lineWidth = 1.6;
        ctx.beginPath();
        ctx.arc(X(q[p.h]), Y(q[p.v]), Math.max(4, 0.9 * size / (h1 - h0)), 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    // frame, ticks every 5 Å (or 10/20 for large boxes)
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.strokeRect(left, top, size, ph);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    var step = [2, 5, 10, 20, 50, 100].find(function (t) { return (h1 - h0) / t <= 8; }) || 200;
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (var t = Math.ceil(h0 / step) * step; t <= h1; t += step) {
      ctx.beginPath(); ctx.moveTo(X(t), top + ph); ctx.lineTo(X(t), top + ph + 4); ctx.stroke();
      ctx.fillText(String(t), X(t), top + ph + 6);
    }
    ctx.fillText(p.hl, left + size / 2, top + ph + 19);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      ctx.beginPath(); ctx.moveTo(left, Y(t)); ctx.lineTo(left - 4, Y(t)); ctx.stroke();
      ctx.fillText(String(t), left - 6, Y(t));
    }
    ctx.save(); ctx.translate(11, top + ph / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText(p.vl, 0, 0); ctx.restore();
    byId("slice-" + p.id + "-pos").textContent = p.fixed + " = " + coords[fi][k].toFixed(2) + " Å";
    canvas.setAttribute("data-drawn", "1");
  }
  function drawAll() { makeLut(); planes.forEach(drawPlane); }
  planes.forEach(function (p) {
    var input = byId("slice-" + p.id + "-range");
    input.max = String(vol.shape[axisIndex[p.fixed]] - 1);
    input.value = String(pos[p.fixed]);
    input.addEventListener("input", function () { pos[p.fixed] = +input.value; drawAll(); });
  });
  var gamma = byId("slice-gamma");
  gamma.value = String(state.gamma);
  gamma.addEventListener("input", function () {
    state.gamma = +gamma.value; byId("slice-gamma-value").textContent = state.gamma.toFixed(2);
    drawAll();
  });
  byId("slice-gamma-value").textContent = state.gamma.toFixed(2);
  var slab = byId("slice-slab");
  slab.value = String(state.slab);
  function slabText() {
    byId("slice-slab-value").textContent = state.slab > 0 ? "±" + state.slab.toFixed(1) + " Å"
      : "one plane";
  }
  slab.addEventListener("input", function () { state.slab = +slab.value; slabText(); drawAll(); });
  slabText();
  var showAtoms = byId("slice-atoms");
  if (showAtoms) showAtoms.addEventListener("change", function () {
    state.atoms = showAtoms.checked; drawAll();
  });
  window.addEventListener("resize", drawAll);
  drawAll();
}

var atoms = readJSON("aet-atoms");
if (atoms && atoms.kind.length) AtomView(atoms);
var vol = readJSON("aet-volume");
if (vol) SliceViews(vol, atoms);
})();
"""
