// The service's page: pick or drop a file, classify it, show the top-k, the preview and the timings.
// Plain script, no build step, no network beyond this server.
"use strict";

const EXTENSIONS = {
  image: ["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"],
  audio: ["wav", "flac", "mp3", "ogg", "m4a", "aac"],
  video: ["mp4", "webm", "mov", "avi", "mkv", "m4v"],
  pointcloud: ["ply", "pcd", "xyz", "pts", "off", "obj", "npy"],
  timeseries: ["csv", "tsv", "json", "txt"],
};
const $ = (id) => document.getElementById(id);
let models = {};  // modality -> its default model
let catalog = [];  // every loaded model and version (GET /models)
let chosen = null;

function guessModality(file) {
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  for (const [modality, exts] of Object.entries(EXTENSIONS)) {
    if (exts.includes(ext) && modality in models) return modality;
  }
  const major = (file.type || "").split("/")[0];
  if (["image", "audio", "video"].includes(major) && major in models) return major;
  return null;
}

function setFile(file) {
  chosen = file;
  const guess = guessModality(file);
  if (guess && guess !== $("modality").value) { $("modality").value = guess; listModels(); }
  $("drop").querySelector("span").textContent = `${file.name} (${file.size} bytes)` +
    (guess ? ` — looks like ${guess}` : " — pick its modality below");
  limitTopK();
}

function selectedModel() {
  return catalog[Number($("model").value)] || models[$("modality").value];
}

function listModels() {
  // The chosen modality's models: its default first, then the repository's, each version by name.
  const modality = $("modality").value;
  const select = $("model");
  select.replaceChildren();
  catalog.forEach((m, i) => {
    if (m.modality !== modality) return;
    const option = document.createElement("option");
    option.value = String(i);
    const label = (m.name || m.modality) === m.modality ? "default" : `${m.name} v${m.model_version}`;
    option.textContent = `${label} — ${m.model}, ${m.num_classes} classes${m.weights_random ? " (RANDOM WEIGHTS)" : ""}`;
    if (label === "default") select.prepend(option); else select.appendChild(option);
  });
  select.selectedIndex = 0;
  limitTopK();
}

function limitTopK() {
  const info = selectedModel();
  if (!info) return;
  const max = Math.min(100, info.num_classes);
  $("topk").max = String(max);
  if (Number($("topk").value) > max) $("topk").value = String(max);
}

function headers() {
  const key = $("apikey").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function body() {
  const form = new FormData();
  form.append("file", chosen, chosen.name);
  return form;
}

async function errorText(response) {
  try {
    const payload = await response.json();
    if (payload.error) return payload.error.message || String(payload.error);
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function renderPredictions(predictions) {
  const list = $("predictions");
  list.replaceChildren();
  for (const p of predictions) {
    const item = document.createElement("li");
    const pct = (p.score * 100).toFixed(1);
    item.innerHTML = `<span class="label"></span><span class="score">${p.score.toFixed(4)}</span>` +
      `<div class="bar" role="img" aria-label="score ${pct} percent"><span></span></div>`;
    item.querySelector(".label").textContent = `${p.label} (#${p.index})`;
    item.querySelector(".bar span").style.width = `${pct}%`; // set through the DOM: the CSP allows no inline style
    list.appendChild(item);
  }
}

function renderTimings(timings, extra) {
  const dl = $("timings");
  dl.replaceChildren();
  for (const [name, value] of Object.entries({ ...timings, ...extra })) {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name.replace(/_/g, " ");
    dd.textContent = typeof value === "number" ? `${value.toFixed(1)} ms` : String(value);
    dl.append(dt, dd);
  }
}

async function run(event) {
  event.preventDefault();
  $("error").hidden = true;
  if (!chosen) { showError("Pick or drop a file first."); return; }
  const modality = $("modality").value;
  const picked = selectedModel();
  const named = picked && (picked.name || modality) !== modality;
  const pick = named ? `&model=${encodeURIComponent(picked.name)}&version=${picked.model_version}` : "";
  const topK = Math.max(1, Math.min(Number($("topk").value) || 5, Number($("topk").max) || 100));
  $("status").textContent = `Classifying ${chosen.name} as ${modality}…`;
  $("run").disabled = true;
  const started = performance.now();
  try {
    const [classified, preview] = await Promise.all([
      fetch(`/classify/${modality}?top_k=${topK}${pick}`, { method: "POST", body: body(), headers: headers() }),
      fetch(`/preview/${modality}`, { method: "POST", body: body(), headers: headers() }),
    ]);
    if (!classified.ok) {
      $("result").hidden = true;
      showError(await errorText(classified));
      $("status").textContent = "Failed.";
      return;
    }
    const answer = await classified.json();
    renderPredictions(answer.predictions);
    $("weights").textContent = `${answer.model} with weights ${answer.weights} answered (batch of ${answer.batch_size}` +
      `${classified.headers.get("X-Cache") === "hit" ? ", from the cache" : ""}).`;
    $("random-warning").hidden = !(picked && picked.weights_random);
    if (preview.ok) {
      $("preview").src = URL.createObjectURL(await preview.blob());
      $("preview").alt = `The ${modality} map the model sees for ${chosen.name}`;
      $("preview-caption").textContent = "What the model sees";
    } else {
      $("preview").removeAttribute("src");
      $("preview-caption").textContent = `No preview: ${await errorText(preview)}`;
    }
    renderTimings(answer.timings, { "round trip": performance.now() - started });
    $("result").hidden = false;
    $("status").textContent = `Done: ${answer.predictions[0].label}.`;
  } catch (err) {
    showError(`The request failed: ${err}`);
    $("status").textContent = "Failed.";
  } finally {
    $("run").disabled = false;
  }
}

async function init() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", () => { if ($("file").files.length) setFile($("file").files[0]); });
  $("modality").addEventListener("change", listModels);
  $("model").addEventListener("change", limitTopK);
  $("form").addEventListener("submit", run);
  try {
    const response = await fetch("/models");
    const listed = (await response.json()).models;
    const select = $("modality");
    catalog = listed.filter((m) => m.modality && m.state !== "UNAVAILABLE");  // what can answer now
    for (const m of catalog) {
      if ((m.name || m.modality) !== m.modality) continue;  // a repository model: listed under "Model"
      models[m.modality] = m;
      const option = document.createElement("option");
      option.value = m.modality;
      option.textContent = `${m.modality} — ${m.model}, ${m.weights}${m.weights_random ? " (RANDOM WEIGHTS)" : ""}`;
      select.appendChild(option);
    }
    listModels();
  } catch (err) {
    showError(`Cannot list the models: ${err}`);
  }
}

init();
