// Upload page: sends the chosen images to /api/v1/predict and shows one row per cell.
"use strict";

const form = document.getElementById("upload-form");
const input = document.getElementById("file-input");
const dropZone = document.getElementById("drop-zone");
const statusLine = document.getElementById("status");
const submitButton = document.getElementById("submit");
const rows = document.getElementById("result-rows");
const summary = document.getElementById("summary");
const results = document.getElementById("results");
const showWhere = document.getElementById("show-where");
const cellView = document.getElementById("cell-view");
let lastResults = [];
let lastFiles = [];

function authHeaders() {
  const key = document.getElementById("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

function element(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

async function loadModelInfo() {
  const info = document.getElementById("model-info");
  try {
    const response = await fetch("/api/v1/model", { headers: authHeaders() });
    const model = await response.json();
    if (!response.ok) throw new Error(model.error || response.statusText);
    const pct = (x) => (x === undefined ? "-" : (100 * x).toFixed(2) + "%");
    const data = model.data || {};
    const dataset = data.dataset || {};
    const test = model.test || {};
    const cv = model.cross_validation;
    const meanSd = (m, pctScale = true) => (m === undefined ? "-" : pctScale
      ? `${(100 * m.mean).toFixed(2)} ± ${(100 * m.sd).toFixed(2)}%` : `${m.mean.toFixed(4)} ± ${m.sd.toFixed(4)}`);
    const measured = cv
      ? ["Cross-validated", `${cv.folds}-fold by patient: accuracy ${meanSd(cv.metrics.accuracy)}, sensitivity ${meanSd(cv.metrics.sensitivity)}, specificity ${meanSd(cv.metrics.specificity)}, AUC ${meanSd(cv.metrics.roc_auc, false)}, ECE ${meanSd(cv.metrics.ece, false)}`]
      : ["Test (unseen patients)", `accuracy ${pct(test.accuracy)}, sensitivity ${pct(test.sensitivity)}, specificity ${pct(test.specificity)}, AUC ${test.roc_auc === undefined ? "-" : test.roc_auc.toFixed(4)}`];
    const entries = [
      ["Model", `${model.name} (${model.id})`],
      ["Architecture", `${model.arch}, ${model.image_size}×${model.image_size} input, ${model.parameters} parameters`],
      ["Training data", `${dataset.images ?? "?"} NIH cell images of ${dataset.patients ?? "?"} patients, ${data.split_mode ?? "?"}-level split`],
      ["Validation accuracy", pct(model.validation && model.validation.accuracy)],
      measured,
      ["Decision rule", decisionRule(model)],
      ["Created", model.created],
    ];
    info.replaceChildren(...entries.flatMap(([k, v]) => [element("dt", { textContent: k }), element("dd", { textContent: v })]));
  } catch (err) {
    info.replaceChildren(element("dt", { textContent: "Model" }), element("dd", { className: "error", textContent: "unavailable: " + err.message }));
  }
}

function decisionRule(model) {
  const points = model.operating_points || {};
  const p = points[model.operating_point];
  if (!p) return "-";
  const f = (x) => x.toFixed(3);
  const calibrated = model.temperature && model.temperature !== 1 ? `calibrated (temperature ${f(model.temperature)}), ` : "";
  return `${calibrated}operating point "${model.operating_point}": Parasitized from P = ${f(p.threshold)}; ` +
         `Inconclusive from ${f(p.inconclusive_low)} to ${f(p.inconclusive_high)}` +
         (Object.keys(points).length > 1 ? ` (also available: ${Object.keys(points).filter((k) => k !== model.operating_point).join(", ")})` : "");
}

function openCellView(r, src) {
  const heat = showWhere.checked && r.explanation;
  document.getElementById("cell-view-title").textContent = r.filename;
  const image = document.getElementById("cell-view-image");
  image.src = heat ? "data:image/png;base64," + r.explanation.overlay_png : src;
  image.alt = heat ? `${r.filename} with its heat map` : r.filename;
  document.getElementById("cell-view-caption").textContent = r.decision === "Rejected" ?
    `Rejected: ${r.reason}` :
    `${r.decision}: P(Parasitized) ${(100 * r.probability_parasitized).toFixed(2)}%` +
    (heat ? ". Red marks where the model sees the strongest evidence of a parasite." : "");
  cellView.showModal();
}

function thumbnail(r, file) {
  if (r.error) return element("span", { className: "placeholder" });
  const src = URL.createObjectURL(file);
  const images = [element("img", { className: "cell", alt: r.filename, src })];
  if (r.explanation)
    images.push(element("img", { className: "heat", alt: `${r.filename} heat map`, src: "data:image/png;base64," + r.explanation.overlay_png }));
  const button = element("button", { type: "button", className: "thumb", title: "enlarge" }, images);
  button.addEventListener("click", () => openCellView(r, src));
  return button;
}

function renderResults(files, response) {
  rows.replaceChildren();
  lastResults = response.results;
  response.results.forEach((r, i) => {
    const thumb = thumbnail(r, files[i]);
    let labelCell, probCell, decisionCell;
    if (r.error) {
      labelCell = element("td", { className: "error", textContent: r.error, colSpan: 2 });
      decisionCell = element("td", {}, [element("span", { className: "badge Error", textContent: "Error" })]);
      rows.append(element("tr", {}, [element("td", {}, [thumb]), element("td", { className: "file", textContent: r.filename }), labelCell, decisionCell]));
      return;
    }
    if (r.decision === "Rejected") {  // no label and no probability: the model refused the image
      const why = r.screen_instead ? `${r.reason}.` : `Not classified: ${r.reason}.`;
      labelCell = element("td", { className: "rejected", textContent: why, colSpan: 2 });
      decisionCell = element("td", {}, [element("span", { className: "badge Rejected", textContent: "Rejected" })]);
      rows.append(element("tr", { className: "result" }, [element("td", {}, [thumb]), element("td", { className: "file", textContent: r.filename }), labelCell, decisionCell]));
      return;
    }
    const bar = element("span", { className: "bar", title: "probability of Parasitized" }, [element("span")]);
    bar.firstChild.style.width = (100 * r.probability_parasitized).toFixed(1) + "%";
    labelCell = element("td", { textContent: r.label });
    probCell = element("td", {}, [bar, element("span", { className: "prob", textContent: (100 * r.probability_parasitized).toFixed(2) + "%" })]);
    decisionCell = element("td", {}, [element("span", { className: "badge " + r.decision, textContent: r.decision })]);
    rows.append(element("tr", { className: "result" }, [element("td", {}, [thumb]), element("td", { className: "file", textContent: r.filename }), labelCell, probCell, decisionCell]));
  });
  const s = response.summary;
  summary.replaceChildren(
    element("span", {}, [element("b", { textContent: s.cells }), " cells"]),
    element("span", {}, [element("b", { textContent: s.parasitized }), " parasitized"]),
    element("span", {}, [element("b", { textContent: s.parasitized_percent.toFixed(1) + "%" }), " parasitized (parasitemia estimate)"]),
    element("span", {}, [element("b", { textContent: s.inconclusive }), " inconclusive"]),
    element("span", {}, [element("b", { textContent: s.rejected }), " rejected (not a cell)"]),
    element("span", {}, [element("b", { textContent: s.errors }), " errors"]));
  results.hidden = false;
}

async function classify(files) {
  if (!files.length) return;
  const body = new FormData();
  for (const f of files) body.append("file", f, f.name);
  submitButton.disabled = true;
  lastFiles = files;
  statusLine.textContent = `Classifying ${files.length} image${files.length > 1 ? "s" : ""}…`;
  try {
    const url = "/api/v1/predict" + (showWhere.checked ? "?explain=1" : "");
    const response = await fetch(url, { method: "POST", body, headers: authHeaders() });
    const payload = await response.json();
    if (!payload.results) throw new Error(payload.error || response.statusText);
    renderResults(files, payload);
    statusLine.textContent = response.ok ? "Done." : payload.error || "Some files could not be classified.";
  } catch (err) {
    statusLine.textContent = "Error: " + err.message;
    statusLine.className = "error";
  } finally {
    submitButton.disabled = false;
  }
}

function csvField(value) {
  const s = String(value ?? "");
  return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

document.getElementById("download-csv").addEventListener("click", () => {
  const header = ["filename", "label", "probability_parasitized", "confidence", "decision", "reason", "error"];
  const lines = [header.join(",")].concat(lastResults.map((r) => header.map((k) => csvField(r[k])).join(",")));
  const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  const a = element("a", { href: url, download: "malaria-results.csv" });
  document.body.append(a);
  a.click();
  a.remove();
  URL.revokeObjectURL(url);
});

showWhere.addEventListener("change", () => {
  results.classList.toggle("show-where", showWhere.checked);
  // Heat maps are computed on request: ask again for results that have none yet.
  if (showWhere.checked && lastFiles.length && !lastResults.some((r) => r.explanation)) classify(lastFiles);
});

// A form whose files are sent by `send`, on submit or when files are dropped on its zone.
function wireUpload(formNode, fileInput, zone, send) {
  formNode.addEventListener("submit", (event) => {
    event.preventDefault();
    send([...fileInput.files]);
  });
  for (const type of ["dragenter", "dragover"])
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  for (const type of ["dragleave", "drop"])
    zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.remove("dragging"); });
  zone.addEventListener("drop", (e) => send([...e.dataTransfer.files]));
}

wireUpload(form, input, dropZone, classify);
document.getElementById("api-key").addEventListener("change", loadModelInfo);

loadModelInfo();
