// The vqforge page: pick a model and a task, run a job, follow its progress (server-sent events), show results.
// Each tab follows only the job it started (by id), so several tabs never mix their results.
"use strict";

const $ = (id) => document.getElementById(id);
const SETTINGS = ["class_label", "height", "width", "count", "top_k", "top_p", "temperature", "cfg", "seed"];
const FINISHED = ["done", "error", "cancelled"];
const TAB_NAMES = { sample: "Sample", synthesize: "Paint & synthesise", complete: "Complete", reconstruct: "Reconstruct" };
const state = { models: [], limits: {}, model: null, task: null, job: null, events: null, photo: null,
  running: false, jobTask: null, jobModel: null, mapTouched: false, untouchedOk: false };
let seg, mask;

// The server's per-process token: every POST carries it (another site's page cannot read it or send it).
const TOKEN = (document.querySelector('meta[name="vqforge-token"]') || {}).content || "";

async function api(path, options) {
  if (options && options.method === "POST") options.headers = { ...(options.headers || {}), "X-VQForge-Token": TOKEN };
  const r = await fetch(path, options);
  const json = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((json && json.error) || `${r.status} ${r.statusText}`);
  return json;
}

function banner(message) {
  $("banner").textContent = message || "";
  $("banner").hidden = !message;
}

// ------------------------------------------------------------------------------------------ models and tabs
async function init() {
  seg = new Grid($("seg-canvas"), renderLabels);
  mask = new Grid($("complete-canvas"), renderMask);
  wireControls();
  try {
    const info = await api("/api/models");
    state.models = info.models;
    state.limits = info.limits;
  } catch (e) {
    return banner(`cannot read the models: ${e.message}`);
  }
  for (const m of state.models) $("model").add(new Option(`${m.name} (${m.mode || "vqgan"})`, m.name));
  if (!state.models.length) return banner("this server has no models loaded");
  setModel(state.models[0].name);
}

function setModel(name) {
  const m = (state.model = state.models.find((x) => x.name === name));
  $("model-info").textContent = `trained at ${m.trained_size.join("×")} px · f${m.factor} · ${m.n_codes} codes`;
  for (const b of document.querySelectorAll("#tabs button")) b.hidden = !m.tasks.includes(b.dataset.task);
  const cls = $("class_label");
  cls.length = 1;
  for (const c of m.classes || []) cls.add(new Option(c.name, c.id));
  ["height", "width"].forEach((id, axis) => sideOptions($(id), m.sides[id], m.trained_size[axis]));
  $("count").max = state.limits.max_count;
  for (const [k, v] of Object.entries(m.defaults)) $(k).value = v;  // the model card's: what the API takes too
  $("cfg").disabled = !m.guidance;
  if (!m.guidance) $("cfg").value = 0;
  buildPalette(m.labels || []);
  seg.resize(...size().reverse(), m.labels && m.labels.length ? m.labels[0].id : 0);  // a new map: the first label
  touchMap(false);
  resizeImages();
  selectTask(m.tasks[0]);
}

function selectTask(task) {
  state.task = task;
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", b.dataset.task === task);
  for (const p of document.querySelectorAll(".panel")) p.hidden = p.id !== `panel-${task}`;
  const m = state.model;
  document.querySelector(".for-class").hidden = !(m.classes && ["sample", "complete"].includes(task));
  for (const el of document.querySelectorAll(".for-sampling")) el.hidden = task === "reconstruct";
  $("complete-map").hidden = !m.labels;
  const limit = m.trained_for && task !== "reconstruct" ? `up to ${m.trained_for.size.join("×")}: ${m.trained_for.why}` : "";
  $("size-note").textContent = [task === "synthesize" ? "the output has the map's size" :
    task === "sample" ? `larger than ${m.trained_size.join("×")} slides the window` : "", limit].filter(Boolean).join(" · ");
  $("complete-untouched").hidden = true;
  updateBusy();
}

// While this page's job runs, the other tabs say what they wait for, and another task's results stay with it.
function updateBusy() {
  const elsewhere = state.jobTask !== null && state.jobTask !== state.task;
  const why = state.running && elsewhere ?
    `waiting for the ${state.jobModel} ${TAB_NAMES[state.jobTask].toLowerCase()} job in the ${TAB_NAMES[state.jobTask]} tab (cancel it there, or wait)` : "";
  $("busy-note").textContent = why;
  $("busy-note").hidden = !why;
  for (const el of [$("results"), $("metrics")]) el.hidden = elsewhere;
  for (const b of document.querySelectorAll("button.go")) {
    b.disabled = state.running;
    b.title = state.running ? (why || "a job of this tab is running (Cancel stops it)") : "";
  }
}

// Whether the label map of Paint & synthesise was painted, filled or uploaded since the model was chosen.
function touchMap(touched = true) {
  state.mapTouched = touched;
  state.untouchedOk = false;
  $("complete-untouched").hidden = true;
}

// The sides the server offers for this model (ratios of the trained side it can sample at), trained selected.
function sideOptions(select, sides, trained) {
  select.length = 0;
  for (const side of sides) {
    const ratio = Math.round((side / trained) * 100) / 100;
    select.add(new Option(`${side} (${side === trained ? "trained" : `${ratio}×`})`, side));
  }
  select.value = trained;
}

// Select `side` in a size list, adding it when it is not offered (the size of an uploaded map).
function selectSide(select, side) {
  if (![...select.options].some((o) => Number(o.value) === side)) select.add(new Option(`${side} (the map's)`, side));
  select.value = side;
}

function size() {
  return [Number($("height").value), Number($("width").value)];
}

// ---------------------------------------------------------------------------------- painting and photos
function buildPalette(labels) {
  const box = $("palette");
  box.textContent = "";
  for (const l of labels) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "swatch";
    b.dataset.label = l.id;
    const dot = document.createElement("i");
    dot.style.background = l.color;  // a style property, not markup: works under a strict CSP
    b.append(dot, l.name);
    b.onclick = () => {
      seg.value = l.id;
      for (const s of box.children) s.setAttribute("aria-pressed", s === b);
    };
    box.append(b);
  }
  seg.colors = [];
  for (const l of labels) seg.colors[l.id] = hexColor(l.color);  // by id: the palette lists common labels first
  if (labels.length) box.children[Math.min(1, labels.length - 1)].click();
  const filter = $("palette-filter");
  filter.hidden = labels.length <= 24;  // many labels (COCO-Stuff: 182): find one by name
  filter.value = "";
  box.classList.toggle("long", labels.length > 24);
}

function filterPalette(text) {
  const t = text.trim().toLowerCase();
  for (const b of $("palette").children) b.hidden = t !== "" && !b.textContent.toLowerCase().includes(t);
}

function renderLabels(rgba, grid) {
  for (let i = 0; i < grid.data.length; i++) rgba.set([...(grid.colors[grid.data[i]] || [0, 0, 0]), 255], 4 * i);
}

function renderMask(rgba, grid) {
  const base = state.photoPixels;
  for (let i = 0; i < grid.data.length; i++) {
    const p = base ? base.subarray(4 * i, 4 * i + 3) : [200, 200, 200];
    const m = grid.data[i];
    rgba.set([m ? 0.45 * p[0] + 140 : p[0], m ? 0.45 * p[1] + 20 : p[1], m ? 0.45 * p[2] + 30 : p[2], 255], 4 * i);
  }
}

// Draw the loaded photo into a w x h canvas, scaled to cover it and centre-cropped.
function drawCover(canvas, bitmap, w, h) {
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = displayWidth(w, h) + "px";
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#c8c8c8";
  ctx.fillRect(0, 0, w, h);
  if (!bitmap) return null;
  const s = Math.max(w / bitmap.width, h / bitmap.height);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (w - bitmap.width * s) / 2, (h - bitmap.height * s) / 2, bitmap.width * s, bitmap.height * s);
  return ctx.getImageData(0, 0, w, h).data;
}

function resizeImages() {
  const [h, w] = size();
  if (!(h > 0 && w > 0)) return;
  const photo = document.createElement("canvas");
  state.photoPixels = drawCover(photo, state.photo, w, h);
  state.photoCanvas = photo;
  mask.resize(w, h, null);
  drawCover($("reconstruct-canvas"), state.photo, w, h);
}

async function loadPhoto(input) {
  if (!input.files.length) return;
  try {
    state.photo = await createImageBitmap(input.files[0]);
  } catch (e) {
    return banner(`${input.files[0].name}: not an image this browser can read`);
  }
  banner("");
  for (const other of [$("complete-file"), $("reconstruct-file")]) if (other !== input) other.value = "";
  mask.fill(0);
  resizeImages();
}

async function loadLabels(input) {
  if (!input.files.length) return;
  const form = new FormData();
  form.append("model", state.model.name);
  form.append("labels", input.files[0]);
  try {
    const r = await fetch("/api/labels", { method: "POST", body: form, headers: { "X-VQForge-Token": TOKEN } });
    if (!r.ok) throw new Error((await r.json()).error);
    const bitmap = await createImageBitmap(await r.blob());
    const c = document.createElement("canvas");
    c.width = bitmap.width;
    c.height = bitmap.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    const ids = new Uint8Array(c.width * c.height);
    for (let i = 0; i < ids.length; i++) ids[i] = px[4 * i];
    seg.set(ids, c.width, c.height);
    touchMap();
    selectSide($("height"), c.height);
    selectSide($("width"), c.width);
    resizeImages();  // the photo and its mask follow the map's size
    banner("");
  } catch (e) {
    banner(e.message);
  }
  input.value = "";
}

// ------------------------------------------------------------------------------------------------ jobs
function settingsForm(task) {
  const form = new FormData();
  form.append("model", state.model.name);
  for (const id of SETTINGS) {
    const el = $(id);
    if (el.closest("label").hidden || el.disabled || el.value === "") continue;
    if ((id === "height" || id === "width") && task !== "sample") continue;  // the image or map sets the size
    form.append(id, el.value);
  }
  if (task === "complete") form.append("paste_back", $("paste_back").checked);
  return form;
}

async function run(task) {
  banner("");
  if ((task === "complete" || task === "reconstruct") && !state.photo) return banner("choose a photo first");
  if (task === "complete" && state.model.labels && !state.mapTouched && !state.untouchedOk) {
    // completing under a map nobody painted: say so once; a second press completes under it
    const first = state.model.labels[0];
    $("complete-untouched").textContent = `The label map of Paint & synthesise is untouched (all ${first.name}): ` +
      "paint or upload the map there, or press Complete again to complete under it as it is.";
    $("complete-untouched").hidden = false;
    state.untouchedOk = true;
    return;
  }
  $("complete-untouched").hidden = true;
  clearResults("submitting");
  state.jobTask = task;  // the results area now belongs to this task
  state.jobModel = state.model.name;
  const form = settingsForm(task);
  const blob = (canvas) => new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (task === "synthesize") form.append("labels", await seg.toPNG(), "labels.png");
  if (task === "complete" || task === "reconstruct") {
    form.append("image", await blob(task === "complete" ? state.photoCanvas : $("reconstruct-canvas")), "image.png");
  }
  if (task === "complete") form.append("mask", await mask.toPNG(255), "mask.png");
  if (task === "complete" && state.model.labels) form.append("labels", await seg.toPNG(), "labels.png");
  try {
    const snap = await api(`/api/jobs/${task}`, { method: "POST", body: form });
    if (!$("seed-keep").checked && form.has("seed")) $("seed").value = Number(form.get("seed")) + 1;  // next run: new images
    follow(snap);
  } catch (e) {
    $("results").dataset.state = "refused";
    banner(e.message);
  }
}

function clearResults(why) {
  if (state.events) state.events.close();
  state.job = null;
  $("results").textContent = "";
  $("results").dataset.state = why;
  delete $("results").dataset.job;
  $("metrics").textContent = "";
}

function follow(snap) {
  state.job = snap.id;
  $("results").dataset.job = snap.id;
  show(snap);
  const events = (state.events = new EventSource(`/api/jobs/${snap.id}/events`));
  events.onmessage = (e) => {
    const s = JSON.parse(e.data);
    if (s.id !== state.job) return events.close();
    show(s);
    if (FINISHED.includes(s.state)) events.close();
  };
  events.onerror = () => lostStream(events, snap.id);
}

// The progress stream broke: the browser retries on its own; when it gives up, ask once for the job's state.
async function lostStream(events, id) {
  if (state.job !== id) return;
  $("progress-text").textContent = "connection lost, reconnecting…";
  if (events.readyState !== EventSource.CLOSED) return;
  try {
    show(await api(`/api/jobs/${id}`));
  } catch (e) {
    $("results").dataset.state = "lost";
    $("cancel").disabled = true;
    state.running = false;
    updateBusy();
    banner(`lost job ${id}: ${e.message === "Failed to fetch" ? "the server is not answering" : e.message}`);
  }
}

function show(snap) {
  const running = !FINISHED.includes(snap.state);
  $("cancel").disabled = !running;
  state.running = running;
  updateBusy();
  $("progress").value = snap.total ? snap.done / snap.total : snap.state === "done" ? 1 : 0;
  $("progress-text").textContent = snap.state === "queued" ? `waiting (${snap.queue_position} ahead)` :
    snap.state === "running" ? `${snap.done} / ${snap.total} tokens` :
    snap.state === "done" ? `done in ${snap.seconds} s` : snap.state;
  if (snap.state === "error") banner(snap.message);
  const urls = snap.results ? snap.results.map((r) => r.url) : snap.previews || [];
  urls.forEach((url, k) => slot(k).img.src = url);
  if (snap.state === "done") {
    snap.results.forEach((r, k) => {
      const { link, caption } = slot(k);
      link.href = r.url;
      link.download = `vqforge-${snap.kind}-${snap.id}-${k}.png`;
      link.hidden = false;
      caption.textContent = r.caption;
    });
    const m = snap.metrics || {};
    $("metrics").innerHTML = (m.psnr_db !== undefined ? `PSNR <b>${m.psnr_db} dB</b> · ${m.codes_used} of ${m.n_codes} codes used · ` : "") +
      `<a href="${snap.settings_url}" download>settings.json</a>`;
  }
  $("results").dataset.state = snap.state;  // last: tests wait for it
}

function slot(k) {
  const id = `result-${k}`;
  let fig = $(id);
  if (!fig) {
    fig = document.createElement("figure");
    fig.id = id;
    fig.innerHTML = `<img class="result" alt="result ${k}"><figcaption><span></span><a hidden>PNG</a></figcaption>`;
    $("results").append(fig);
  }
  const img = fig.querySelector("img");
  img.onload = () => (img.style.width = displayWidth(img.naturalWidth, img.naturalHeight, 200) + "px");
  return { img, link: fig.querySelector("a"), caption: fig.querySelector("span") };
}

// ---------------------------------------------------------------------------------------------- controls
function wireControls() {
  $("model").onchange = (e) => setModel(e.target.value);
  for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => selectTask(b.dataset.task);
  for (const task of ["sample", "synthesize", "complete", "reconstruct"]) $(`${task}-run`).onclick = () => run(task);
  $("cancel").onclick = () => state.job && api(`/api/jobs/${state.job}/cancel`, { method: "POST" }).catch((e) => banner(e.message));
  $("reseed").onclick = () => ($("seed").value = Math.floor(Math.random() * 2 ** 31));
  for (const id of ["height", "width"]) $(id).addEventListener("change", () => {
    const [h, w] = size();
    if (h > 0 && w > 0) seg.resize(w, h);
    resizeImages();
  });
  $("seg-brush").onchange = (e) => (seg.size = Number(e.target.value));
  $("mask-brush").onchange = (e) => (mask.size = Number(e.target.value));
  seg.size = Number($("seg-brush").value);
  mask.size = Number($("mask-brush").value);
  $("seg-fill").onclick = () => {
    seg.fill(seg.value);
    touchMap();
  };
  seg.onchange = () => state.mapTouched || touchMap();
  $("palette-filter").oninput = (e) => filterPalette(e.target.value);
  $("seg-file").onchange = (e) => loadLabels(e.target);
  $("complete-file").onchange = (e) => loadPhoto(e.target);
  $("reconstruct-file").onchange = (e) => loadPhoto(e.target);
  $("mask-clear").onclick = () => mask.fill(0);
}

document.addEventListener("DOMContentLoaded", init);
