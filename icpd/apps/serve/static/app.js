// icpd serve's page: pick an image, tick classes, see the overlay and the pixel counts.
// Plain JavaScript, no build step, nothing fetched from anywhere but this server's API.
"use strict";

// Overlay colours: icpd.io.viz.overlay_palette() (class 1 magenta, ...; further labels VOC).
// The label PNG the API returns is a palette PNG in these colours; the legend uses the same table.
const VIVID = [
  [255, 0, 255], [255, 230, 0], [0, 235, 255], [255, 40, 40], [255, 140, 0], [60, 110, 255],
  [255, 130, 200], [160, 70, 255], [255, 255, 255], [190, 255, 40], [200, 0, 100], [255, 200, 140],
  [120, 200, 255], [230, 170, 255], [0, 160, 150],
];

function vocColour(k) {
  let r = 0, g = 0, b = 0, c = k;
  for (let shift = 7; shift >= 0; shift--) {
    r |= (c & 1) << shift; g |= ((c >> 1) & 1) << shift; b |= ((c >> 2) & 1) << shift;
    c >>= 3;
  }
  return [r, g, b];
}

function labelColour(label) {
  return label >= 1 && label <= VIVID.length ? VIVID[label - 1] : vocColour(label);
}

const $ = (id) => document.getElementById(id);
const api = (path) => new URL(path, document.baseURI).toString();

function headers(extra) {
  const h = Object.assign({}, extra);
  const token = $("token").value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
  if (text) document.body.dataset.state = "error";
}

// One line for a failed response: the API's JSON message ({"error": ...} or {"detail": ...}) or its text.
async function failure(response) {
  let message = response.statusText;
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text);
      const detail = body.error !== undefined ? body.error : (body.message !== undefined ? body.message : body.detail);
      message = typeof detail === "string" ? detail : (detail && detail.message) || JSON.stringify(detail);
    } catch (_) {
      message = text || message;
    }
  } catch (_) { /* no body */ }
  return `${response.status}: ${message}`;
}

let classRequests = 0; // the latest GET /v1/supports wins (a token change and a click can overlap)

async function loadClasses() {
  const mine = ++classRequests;
  const box = $("classes");
  let response;
  try {
    response = await fetch(api("v1/supports"), { headers: headers({ Accept: "application/json" }) });
  } catch (e) {
    if (mine === classRequests) showError("the server did not answer: " + e);
    return;
  }
  if (mine !== classRequests) return;
  if (!response.ok) {
    showError("classes: " + (await failure(response)));
    return;
  }
  const names = (await response.json()).supports.map((s) => s.name);
  if (mine !== classRequests) return;
  showError("");
  const ticked = new Set(checkedClasses()); // kept across a reload
  box.replaceChildren();
  if (!names.length) {
    box.innerHTML = '<span class="muted">the server has no support sets: PUT /v1/supports/NAME first</span>';
  }
  for (const name of names) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "class";
    input.value = name;
    input.checked = ticked.has(name);
    label.append(input, " " + name);
    box.append(label);
  }
}

function checkedClasses() {
  return [...document.querySelectorAll('#classes input[name="class"]:checked')].map((c) => c.value);
}

function decodeImage(blob) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(blob);
    const img = new Image();
    img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("the browser cannot decode it")); };
    img.src = url;
  });
}

function pixelsOf(img, width, height) {
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height);
}

// The scene with each labelled pixel tinted by its class colour (alpha blend; background untouched).
async function drawOverlay(file, labelBlob, alpha) {
  const labels = await decodeImage(labelBlob);
  const width = labels.naturalWidth, height = labels.naturalHeight;
  const canvas = $("overlay");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  let scene;
  try {
    scene = pixelsOf(await decodeImage(file), width, height);
  } catch (_) { // TIFF: browsers do not decode it; the labels go over grey
    ctx.fillStyle = "#808080";
    ctx.fillRect(0, 0, width, height);
    scene = ctx.getImageData(0, 0, width, height);
    $("status").textContent = "this browser cannot show the scene itself (TIFF): labels over grey";
  }
  const tint = pixelsOf(labels, width, height).data;
  const out = scene.data;
  for (let i = 0; i < out.length; i += 4) {
    if (tint[i] || tint[i + 1] || tint[i + 2]) { // label 0 (background) is black in the palette
      for (let k = 0; k < 3; k++) out[i + k] = Math.round((1 - alpha) * out[i + k] + alpha * tint[i + k]);
    }
  }
  ctx.putImageData(scene, 0, 0);
}

// [{name, label, pixels, area, unit}] of a POST /v1/segment JSON answer: "classes" in label order
// (label i + 1), "pixels" by name, "area" by name (null without georeferencing) in "area_unit".
function countRows(body) {
  return body.classes.map((name, i) => ({
    name, label: i + 1, pixels: body.pixels[name],
    area: body.area ? body.area[name] : null, unit: body.area_unit || "",
  }));
}

function showCounts(body, width, height) {
  const tbody = $("counts").querySelector("tbody");
  tbody.replaceChildren();
  for (const row of countRows(body)) {
    const tr = document.createElement("tr");
    tr.dataset.class = row.name;
    const [r, g, b] = labelColour(row.label);
    const share = width && height ? (100 * row.pixels / (width * height)).toFixed(2) + " %" : "";
    const area = row.area === undefined || row.area === null ? "" : `${Number(row.area).toPrecision(6)} ${row.unit}`;
    const cells = [`<span class="swatch" style="background: rgb(${r}, ${g}, ${b})"></span>`,
      row.name, row.label, row.pixels, share, area];
    for (const [k, value] of cells.entries()) {
      const td = document.createElement("td");
      if (k === 0) td.innerHTML = value; else td.textContent = String(value);
      td.className = ["swatch-cell", "name", "label", "pixels", "share", "area"][k];
      tr.append(td);
    }
    tbody.append(tr);
  }
  const notes = $("notes");
  notes.replaceChildren();
  for (const note of body.notes || []) {
    const li = document.createElement("li");
    li.textContent = note;
    notes.append(li);
  }
  const t = body.timings || {};
  $("timings").textContent = Object.keys(t).map((k) => `${k} ${(1000 * t[k]).toFixed(1)} ms`).join(", ");
}

async function segment(event) {
  event.preventDefault();
  document.body.dataset.state = "busy"; // before any await: "done" or "error" below is this request's
  showError("");
  const file = $("image").files[0];
  const chosen = checkedClasses();
  if (!file) { showError("pick an image first"); return; }
  if (!chosen.length) { showError("tick at least one class (Load classes lists them)"); return; }
  const threshold = $("threshold").value.trim() || "0.5";
  const alpha = Math.min(1, Math.max(0, Number($("alpha").value) || 0.5));
  const query = `v1/segment?classes=${encodeURIComponent(chosen.join(","))}&threshold=${encodeURIComponent(threshold)}`;
  const body = await file.arrayBuffer();
  const type = file.type || "application/octet-stream";
  $("submit").disabled = true;
  $("status").textContent = "segmenting ...";
  try {
    const post = (accept) => fetch(api(query), { method: "POST", body, headers: headers({ Accept: accept, "Content-Type": type }) });
    const [png, json] = await Promise.all([post("image/png"), post("application/json")]);
    if (!png.ok) throw new Error(await failure(png));
    if (!json.ok) throw new Error(await failure(json));
    $("status").textContent = "";
    await drawOverlay(file, await png.blob(), alpha);
    const canvas = $("overlay");
    showCounts(await json.json(), canvas.width, canvas.height);
    $("result").hidden = false;
    $("status").textContent = $("status").textContent || "done";
    document.body.dataset.state = "done";
  } catch (e) {
    $("status").textContent = "";
    showError(e.message || String(e));
  } finally {
    $("submit").disabled = false;
  }
}

async function showModel() {
  try {
    const response = await fetch(api("v1/model"), { headers: headers({ Accept: "application/json" }) });
    if (!response.ok) return;
    const m = await response.json();
    $("model").textContent = [m.preset, m.backend, m.precision, m.fingerprint && String(m.fingerprint).slice(0, 12)]
      .filter(Boolean).join(" · ");
  } catch (_) { /* the model line is a nicety */ }
}

$("token").value = sessionStorage.getItem("icpd-serve-token") || "";
$("token").addEventListener("change", () => {
  sessionStorage.setItem("icpd-serve-token", $("token").value.trim());
  loadClasses(); showModel();
});
$("reload").addEventListener("click", () => { loadClasses(); showModel(); });
$("form").addEventListener("submit", segment);
loadClasses();
showModel();
