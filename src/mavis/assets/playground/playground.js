// The mavis playground: one slider per loaded objective, beta and top-k, and a streamed answer
// from POST /v1/chat/completions followed by each objective's reward and the answer's KL.
"use strict";

const $ = (id) => document.getElementById(id);
let modelName = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "status error" : "status";
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function addSlider(objective, count) {
  const wrap = document.createElement("div");
  wrap.className = "slider";
  const id = "weight-" + objective.name;
  const start = (1 / count).toFixed(2);
  wrap.innerHTML =
    `<label for="${id}"><span>${objective.name}</span><output>${start}</output></label>` +
    `<input id="${id}" type="range" min="0" max="1" step="0.05" value="${start}">` +
    `<small></small>`;
  wrap.querySelector("small").textContent = objective.description || "";
  const input = wrap.querySelector("input");
  input.dataset.objective = objective.name;
  input.addEventListener("input", () => {
    wrap.querySelector("output").textContent = Number(input.value).toFixed(2);
  });
  $("sliders").appendChild(wrap);
}

async function loadServer() {
  try {
    const [models, objectives] = await Promise.all([getJSON("/v1/models"),
                                                    getJSON("/v1/objectives")]);
    modelName = models.data[0].id;
    $("model").textContent = modelName;
    $("sliders").innerHTML = "";
    objectives.data.forEach((o) => addSlider(o, objectives.data.length));
    if (!objectives.data.length) {
      $("sliders").innerHTML = '<p class="hint">no value models loaded: plain sampling</p>';
    }
    $("beta").value = objectives.default_beta;
    $("kl-budget").value = objectives.default_kl_budget ?? "";
    $("top-k").value = objectives.default_top_k;
    $("top-k").max = objectives.max_top_k;
    $("max-tokens").value = Math.min(64, objectives.max_tokens);
    $("beta-value").textContent = $("beta").value;
    setStatus("ready");
  } catch (error) {
    setStatus("cannot reach the server: " + error.message + " (an API key needed?)", true);
  }
}

function weights() {
  const chosen = {};
  document.querySelectorAll("#sliders input[type=range]").forEach((input) => {
    if (Number(input.value) > 0) chosen[input.dataset.objective] = Number(input.value);
  });
  return chosen;
}

function requestBody() {
  const body = {
    model: modelName,
    messages: [{ role: "user", content: $("prompt").value }],
    stream: true,
    score: true,
    beta: Number($("beta").value),
    top_k: Number($("top-k").value),
    max_tokens: Number($("max-tokens").value),
  };
  const chosen = weights();
  if (Object.keys(chosen).length) body.objective_weights = chosen;
  else if (document.querySelector("#sliders input")) body.beta = 0;  // every slider at 0
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if ($("kl-budget").value !== "") body.kl_budget = Number($("kl-budget").value);
  return body;
}

function showResult(choice) {
  const rows = $("scores").querySelector("tbody");
  rows.innerHTML = "";
  const used = choice.weights || {};
  Object.entries(choice.scores || {}).forEach(([name, value]) => {
    const row = document.createElement("tr");
    row.dataset.objective = name;
    const weight = used[name] === undefined ? "0" : used[name].toFixed(2);
    row.innerHTML = `<td>${name}</td><td>${weight}</td><td class="reward">${value.toFixed(3)}</td>`;
    rows.appendChild(row);
  });
  $("kl").textContent = choice.kl.toFixed(2);
}

async function readStream(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut).replace(/^data: /, "");
      buffer = buffer.slice(cut + 2);
      if (event === "[DONE]") return;
      const chunk = JSON.parse(event);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      if (!choice) continue;
      if (choice.delta && choice.delta.content) $("answer").textContent += choice.delta.content;
      if (choice.finish_reason) showResult(choice);
    }
  }
}

async function generate() {
  $("generate").disabled = true;
  $("answer").textContent = "";
  $("kl").textContent = "–";
  $("scores").querySelector("tbody").innerHTML = "";
  setStatus("generating…");
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : response.statusText);
    }
    await readStream(response);
    setStatus("done");
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    $("generate").disabled = false;
  }
}

$("beta").addEventListener("input", () => { $("beta-value").textContent = $("beta").value; });
$("generate").addEventListener("click", generate);
$("api-key").addEventListener("change", loadServer);
loadServer();
