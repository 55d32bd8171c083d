// stylegate playground: plain JavaScript, no build step, nothing from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
// Requests of this page replace their own kind on the server (a newer edit cancels the older).
const session = Math.random().toString(36).slice(2) + Date.now().toString(36);

const state = {
  models: {},          // name -> model info from /api/models
  model: "",           // the generator of the source latent
  source: null,        // {id, label, image}
  edited: null,        // latent id of the latest edit
  library: [],         // [{id, label, image, model}]
  invert: null,        // AbortController of the running inversion
  edit: null,          // AbortController of the running edit
  editTimer: 0,
  editGen: 0,
  lastInput: 0,        // performance.now() of the last slider move
};

// --- errors beside their control ------------------------------------------------------------

function showError(id, err) {
  const el = $(id);
  el.textContent = err && err.message ? err.message : String(err);
}

function clearError(id) {
  $(id).textContent = "";
}

class ApiError extends Error {
  constructor(message, data = {}) {
    super(message);
    this.field = data.field || "";
    this.superseded = Boolean(data.superseded);
  }
}

async function readJson(res) {
  let data = null;
  try {
    data = await res.json();
  } catch {
    throw new ApiError(`the playground server answered ${res.status} ${res.statusText} without a message`);
  }
  if (!res.ok) throw new ApiError(data.error || `${res.status} ${res.statusText}`, data);
  return data;
}

async function call(path, body, signal) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, session }),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("cannot reach the playground server (is `stylegate ui` still running?)");
  }
  return readJson(res);
}

function ignorable(err) {
  return err.name === "AbortError" || err.superseded;
}

// --- models ---------------------------------------------------------------------------------

function renderModel() {
  return $("blend").checked && state.models.blend ? "blend" : state.model;
}

async function loadModels() {
  clearError("models-error");
  try {
    const res = await fetch("/api/models");
    const data = await readJson(res);
    $("server").textContent = data.server;
    state.models = Object.fromEntries(data.models.map((m) => [m.name, m]));
    const select = $("model");
    select.replaceChildren();
    for (const m of data.models) {
      const option = new Option(`${m.name} — ${m.description || m.resolution + "px"}`, m.name);
      select.append(option);
    }
    select.value = data.default || data.models[0]?.name || "";
    selectModel(select.value);
    setStatus(true, `gateway ${data.server}`);
  } catch (err) {
    showError("models-error", err);
    setStatus(false, "gateway unavailable");
    setTimeout(loadModels, 3000);  // keep trying: the gateway may still be starting
  }
}

function setStatus(ok, text) {
  const el = $("gateway-status");
  el.className = `status ${ok ? "ok" : "bad"}`;
  el.textContent = text;
}

function selectModel(name) {
  state.model = name;
  const m = state.models[name];
  if (!m) return;
  const method = $("method");
  method.replaceChildren(...m.inversion_methods.map((x) => new Option(x, x)));
  if (m.inversion_methods.includes("in_domain")) method.value = "in_domain";
  const canInvert = m.inversion_methods.length > 0;
  $("invert-btn").disabled = !canInvert;
  $("invert-btn").title = canInvert ? "" : `${name} cannot invert images; start from a seed`;
  $("class-label-row").hidden = !(m.c_dim > 0);
  $("class-label").max = Math.max(0, m.c_dim - 1);
  const blend = state.models.blend;
  $("blend-toggle").hidden = !(blend && name !== "blend" && blend.num_ws === m.num_ws);
  for (const id of ["layer-start", "layer-stop", "mix-start", "mix-stop"]) $(id).max = m.num_ws;
  $("layer-stop").value = m.num_ws;
  $("mix-stop").value = Math.floor(m.num_ws / 2);
  $("layers-hint").textContent = `${m.num_ws} layers; [from, to)`;
  buildSliders(m);
  setSource(null);
}

function buildSliders(m) {
  const named = m.directions.filter((d) => d.attribute);
  const others = m.directions.filter((d) => !d.attribute);
  const fill = (el, dirs) => {
    el.replaceChildren();
    for (const d of dirs) {
      const id = `slider-${d.name}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = d.name;
      label.title = `${d.method}, layers [${d.layer_start}, ${d.layer_stop}), std ${d.std.toFixed(3)}`;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id, min: -5, max: 5, step: 0.1, value: 0 });
      input.dataset.direction = d.name;
      const out = document.createElement("output");
      out.htmlFor = id;
      out.textContent = "0.0";
      input.addEventListener("input", () => {
        out.textContent = Number(input.value).toFixed(1);
        scheduleEdit();
      });
      el.append(label, input, out);
    }
  };
  fill($("sliders"), named);
  fill($("sliders-more"), others);
  $("sliders-more").parentElement.hidden = others.length === 0;
  const conditions = $("conditions");
  conditions.replaceChildren();
  for (const d of named) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    Object.assign(box, { type: "checkbox", value: d.name, id: `cond-${d.name}` });
    box.addEventListener("change", () => scheduleEdit());
    label.append(box, ` ${d.name}`);
    conditions.append(label);
  }
}

// --- source: inversion or seed ---------------------------------------------------------------

function setSource(item, reconstruction = null, original = null) {
  state.source = item;
  state.edited = null;
  setImage("original", original || (item && item.image));
  setImage("reconstruction", reconstruction || (item && item.image));
  setImage("edited", null);
  $("edit-info").textContent = "";
  $("recon-info").textContent = "";
  for (const id of ["download-png", "download-npy"]) {
    $(id).classList.add("disabled");
    $(id).removeAttribute("href");
  }
  if (item) {
    $("download-npy").href = `/api/latents/${item.id}.npy`;
    $("download-npy").classList.remove("disabled");
    scheduleEdit(0);
  }
}

function setImage(id, src) {
  if (src) $(id).src = src;
  else $(id).removeAttribute("src");
}

// A new source (inversion or seed) becomes A / "to", the one before it B / "from";
// derived latents (mixes, kept edits) join the lists without changing the choice.
function addToLibrary(item, { choose = true } = {}) {
  state.library.push(item);
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.src = item.image;
  img.alt = item.label;
  const span = document.createElement("span");
  span.textContent = item.label;
  const use = document.createElement("button");
  use.type = "button";
  use.textContent = "edit";
  use.addEventListener("click", () => {
    if (item.model && item.model !== state.model && state.models[item.model]) {
      $("model").value = item.model;
      selectModel(item.model);
    }
    setSource(item);
  });
  const npy = document.createElement("a");
  npy.href = `/api/latents/${item.id}.npy`;
  npy.textContent = ".npy";
  li.append(img, span, use, npy);
  $("library").append(li);
  const n = state.library.length;
  for (const [id, pick] of [["mix-a", n - 1], ["mix-b", n - 2], ["interp-start", n - 2], ["interp-end", n - 1]]) {
    const select = $(id);
    select.append(new Option(`#${n} ${item.label}`, item.id));
    if (choose || n <= 2) select.selectedIndex = Math.max(0, pick);
  }
}

async function invert(ev) {
  ev.preventDefault();
  clearError("invert-error");
  const file = $("image").files[0];
  if (!file) {
    showError("invert-error", "choose an image file first");
    return;
  }
  if (state.invert) state.invert.abort();
  const controller = (state.invert = new AbortController());
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("model", state.model);
  form.append("method", $("method").value);
  form.append("optimizer", $("optimizer").value);
  form.append("steps", $("steps").value);
  form.append("preview_every", $("preview-every").value);
  form.append("early_stop", $("early-stop").checked ? "1" : "0");
  form.append("session", session);
  const started = performance.now();
  delete $("reconstruction").dataset.ms;
  $("progress").value = 0;
  $("progress").max = Number($("steps").value) || 1;
  $("progress-text").textContent = "uploading…";
  $("cancel-btn").disabled = false;
  $("invert-btn").disabled = true;
  try {
    let res;
    try {
      res = await fetch("/api/invert", { method: "POST", body: form, signal: controller.signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError("cannot reach the playground server (is `stylegate ui` still running?)");
    }
    if (!(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      await readJson(res);  // an error before the stream began
      throw new ApiError("the server answered without a progress stream");
    }
    await readEvents(res, (event, data) => onInvertEvent(event, data, file, started));
  } catch (err) {
    if (err.name === "AbortError") {
      if (state.invert === controller) $("progress-text").textContent = "cancelled";
    } else if (!err.superseded) {
      showError("invert-error", err);
      $("progress-text").textContent = "";
    }
  } finally {
    if (state.invert === controller) {
      state.invert = null;
      $("cancel-btn").disabled = true;
      $("invert-btn").disabled = !(state.models[state.model]?.inversion_methods.length > 0);
    }
  }
}

async function readEvents(res, handle) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      handle(event, JSON.parse(data.join("\n")));
    }
  }
}

function onInvertEvent(event, data, file, started) {
  if (event === "progress") {
    $("progress").max = data.total;
    $("progress").value = data.step;
    const psnr = data.psnr == null ? "" : ` · PSNR ≈ ${data.psnr.toFixed(1)} dB`;
    $("progress-text").textContent = `step ${data.step}/${data.total} · loss ${data.loss.toFixed(4)}${psnr}`;
    if (data.preview) $("preview").src = data.preview;
  } else if (event === "result") {
    const ms = performance.now() - started;
    $("progress").value = $("progress").max;
    $("progress-text").textContent =
      `done: ${data.steps} ${data.optimizer || ""} steps${data.early_stopped ? " (early stop)" : ""}, ` +
      `PSNR ${data.psnr.toFixed(1)} dB, SSIM ${data.ssim.toFixed(3)}, ${(ms / 1000).toFixed(1)} s`;
    $("preview").src = data.reconstruction;
    const item = { id: data.latent, label: data.label, image: data.reconstruction, model: data.model };
    addToLibrary(item);
    setSource(item, data.reconstruction, data.target);
    $("recon-info").textContent = `${data.psnr.toFixed(1)} dB`;
    $("reconstruction").dataset.ms = ms.toFixed(0);  // upload -> reconstruction shown
  } else if (event === "error") {
    throw new ApiError(data.error, data);
  }
}

async function useSeed(ev) {
  ev.preventDefault();
  clearError("seed-error");
  const body = {
    model: state.model,
    seed: $("seed").value,
    truncation: $("truncation").value,
  };
  if (!$("class-label-row").hidden) body.class_label = $("class-label").value;
  try {
    const data = await call("/api/seed", body);
    const item = { id: data.latent, label: data.label, image: data.image, model: data.model };
    addToLibrary(item);
    setSource(item);
    $("recon-info").textContent = "(exact: a generated face)";
  } catch (err) {
    if (!ignorable(err)) showError("seed-error", err);
  }
}

// --- editing: debounced, the superseded request aborted ---------------------------------------

function scheduleEdit(delay = 60) {
  state.lastInput = performance.now();
  clearTimeout(state.editTimer);
  state.editTimer = setTimeout(runEdit, delay);
}

function currentEdits() {
  const override = $("layers-override").checked;
  const conditions = [...document.querySelectorAll("#conditions input:checked")].map((b) => b.value);
  // none ticked: the direction's measured default conditioning, unless that is switched off
  const unconditioned = conditions.length === 0 && !$("measured-defaults").checked;
  const edits = [];
  for (const input of document.querySelectorAll(".sliders input[type=range]")) {
    const strength = Number(input.value);
    if (strength === 0) continue;
    const op = { name: input.dataset.direction, strength, condition_on: conditions, unconditioned };
    if (override) {
      op.layer_start = $("layer-start").value;
      op.layer_stop = $("layer-stop").value;
    }
    edits.push(op);
  }
  return edits;
}

async function runEdit() {
  if (!state.source) return;
  clearError("edit-error");
  if (state.edit) state.edit.abort();
  const controller = (state.edit = new AbortController());
  const gen = ++state.editGen;
  const asked = state.lastInput;
  const edits = currentEdits();
  try {
    const data = await call(
      "/api/edit",
      { model: renderModel(), latent: state.source.id, edits },
      controller.signal,
    );
    if (gen !== state.editGen) return;
    const img = $("edited");
    img.src = data.image;
    await img.decode().catch(() => {});
    const ms = performance.now() - asked;
    img.dataset.version = String(Number(img.dataset.version) + 1);
    img.dataset.ms = ms.toFixed(0);  // last slider move -> updated image shown
    state.edited = data.latent;
    $("edit-info").textContent = `${edits.length} edit${edits.length === 1 ? "" : "s"} · ${data.model} · ${ms.toFixed(0)} ms`;
    $("download-png").href = data.image;
    $("download-png").download = `edited-${state.source.label.replace(/[^\w.-]+/g, "_")}.png`;
    $("download-npy").href = `/api/latents/${data.latent}.npy`;
    for (const id of ["download-png", "download-npy"]) $(id).classList.remove("disabled");
  } catch (err) {
    if (!ignorable(err) && gen === state.editGen) showError("edit-error", err);
  } finally {
    if (state.edit === controller) state.edit = null;
  }
}

function resetSliders() {
  for (const input of document.querySelectorAll(".sliders input[type=range]")) {
    input.value = 0;
    input.nextElementSibling.textContent = "0.0";
  }
  scheduleEdit(0);
}

function keepEdited() {
  if (!state.edited) return;
  const item = {
    id: state.edited,
    label: `edited ${state.source ? state.source.label : ""}`.trim(),
    image: $("edited").src,
    model: state.model,
  };
  addToLibrary(item, { choose: false });
}

// --- mixing and interpolation ---------------------------------------------------------------

async function mix(ev) {
  ev.preventDefault();
  clearError("mix-error");
  try {
    const data = await call("/api/mix", {
      model: renderModel(),
      a: $("mix-a").value,
      b: $("mix-b").value,
      layer_start: $("mix-start").value,
      layer_stop: $("mix-stop").value,
    });
    $("mixed").src = data.image;
    const item = { id: data.latent, label: data.label, image: data.image, model: state.model };
    addToLibrary(item, { choose: false });
  } catch (err) {
    if (!ignorable(err)) showError("mix-error", err);
  }
}

async function interpolate(ev) {
  ev.preventDefault();
  clearError("interp-error");
  try {
    const data = await call("/api/interpolate", {
      model: renderModel(),
      start: $("interp-start").value,
      end: $("interp-end").value,
      frames: $("interp-frames").value,
      mode: $("interp-mode").value,
    });
    $("strip").replaceChildren(
      ...data.frames.map((src, i) => Object.assign(new Image(), { src, alt: `frame ${i}` })),
    );
  } catch (err) {
    if (!ignorable(err)) showError("interp-error", err);
  }
}

// --- wiring ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", (ev) => selectModel(ev.target.value));
  $("blend").addEventListener("change", () => scheduleEdit(0));
  $("invert-form").addEventListener("submit", invert);
  $("cancel-btn").addEventListener("click", () => state.invert && state.invert.abort());
  $("seed-form").addEventListener("submit", useSeed);
  $("reset-btn").addEventListener("click", resetSliders);
  $("keep-btn").addEventListener("click", keepEdited);
  for (const id of ["layers-override", "layer-start", "layer-stop", "measured-defaults"]) {
    $(id).addEventListener("change", () => scheduleEdit());
  }
  $("mix-form").addEventListener("submit", mix);
  $("interp-form").addEventListener("submit", interpolate);
  loadModels();
});
