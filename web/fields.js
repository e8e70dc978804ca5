// Smear fields: sends a slide's field photos to /api/v1/screen and shows each field with its
// cells outlined (click one to enlarge it) and the slide's parasitemia with its interval.
"use strict";

const fieldForm = document.getElementById("field-form");
const fieldInput = document.getElementById("field-input");
const fieldDrop = document.getElementById("field-drop");
const fieldStatus = document.getElementById("field-status");
const fieldSubmit = document.getElementById("field-submit");
const fieldList = document.getElementById("field-list");

// The cell cut out of the uploaded photo, enlarged, in the shared dialog.
function openFieldCell(image, cell, fieldName) {
  const canvas = document.createElement("canvas");
  const side = 256, pad = 0.15;
  const x = Math.max(0, cell.x - pad * cell.w), y = Math.max(0, cell.y - pad * cell.h);
  const w = cell.w * (1 + 2 * pad), h = cell.h * (1 + 2 * pad);
  const scale = side / Math.max(w, h);
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  canvas.getContext("2d").drawImage(image, x, y, w, h, 0, 0, canvas.width, canvas.height);
  document.getElementById("cell-view-title").textContent =
    `${fieldName}: cell ${cell.number ? "#" + cell.number : ""} at (${cell.x}, ${cell.y})`;
  const view = document.getElementById("cell-view-image");
  view.src = canvas.toDataURL("image/png");
  view.alt = `cell at ${cell.x}, ${cell.y} of ${fieldName}`;
  const stage = cell.stage ? `; stage ${cell.stage} (${(100 * cell.stage_probabilities[cell.stage]).toFixed(0)}%)` : "";
  document.getElementById("cell-view-caption").textContent =
    `${cell.decision}: P(Parasitized) ${(100 * cell.probability_parasitized).toFixed(2)}%${stage}`;
  document.getElementById("cell-view").showModal();
}

function percentBox(node, box, field) {
  node.style.left = (100 * box.x / field.width) + "%";
  node.style.top = (100 * box.y / field.height) + "%";
  node.style.width = (100 * box.w / field.width) + "%";
  node.style.height = (100 * box.h / field.height) + "%";
}

function renderField(field, file) {
  const src = URL.createObjectURL(file);
  const image = element("img", { src, alt: `field ${field.file}` });
  const stage = element("div", { className: "field-stage" }, [image]);
  for (const cut of field.excluded_cells || []) {
    const box = element("span", { className: "cell-box excluded", title: "cut by the edge: not counted" });
    percentBox(box, cut, field);
    stage.append(box);
  }
  for (const cell of field.cells) {
    // The number of a Parasitized call, and its stage's initial (R, T, S, G) when known.
    const stageLetter = cell.stage ? cell.stage[0].toUpperCase() : "";
    const box = element("button", {
      type: "button", className: "cell-box " + cell.decision,
      title: `${cell.decision}, P(Parasitized) ${(100 * cell.probability_parasitized).toFixed(1)}%` +
        (cell.stage ? `, ${cell.stage}` : ""),
      textContent: cell.number ? `${cell.number}${stageLetter}` : "",
    });
    box.setAttribute("aria-label", `${cell.decision} cell${cell.number ? " " + cell.number : ""}` +
      (cell.stage ? ` (${cell.stage})` : ""));
    percentBox(box, cell, field);
    box.addEventListener("click", () => openFieldCell(image, cell, field.file));
    stage.append(box);
  }
  const s = field.summary;
  const quality = field.quality || { verdict: "ok", reasons: [] };
  // A field that failed its quality verdict has no count: say why instead.
  const text = quality.verdict === "fail"
    ? `${field.file}: not counted (${quality.reasons.join("; ")})`
    : `${field.file}: ${s.cells} cells, ${s.parasitized} parasitized ` +
      `(${s.parasitemia_percent.toFixed(2)}%), ${s.inconclusive} inconclusive, ${s.excluded} cut by the edge` +
      (stageText(s) ? ` (stages: ${stageText(s)})` : "") +
      (quality.verdict === "warn" ? ` (warning: ${quality.reasons.join("; ")})` : "");
  const caption = element("figcaption", { className: "quality-" + quality.verdict, textContent: text });
  return element("figure", { className: "field" }, [caption, stage]);
}

// "3 ring, 1 gametocyte" from a summary's stage counts; "" when stages are unknown or none.
function stageText(s) {
  if (!s.stages) return "";
  return Object.entries(s.stages).filter(([, n]) => n > 0).map(([name, n]) => `${n} ${name}`).join(", ");
}

function renderSlide(files, payload) {
  const s = payload.slide;
  const figure = s.parasitemia_percent === null
    ? element("span", { className: "error" }, [element("b", { textContent: "No usable field" }), ": no parasitemia"])
    : element("span", {}, [element("b", { textContent: s.parasitemia_percent.toFixed(2) + "%" }),
      ` parasitemia (95% CI ${s.ci_low.toFixed(2)}-${s.ci_high.toFixed(2)}%)`]);
  document.getElementById("slide-summary").replaceChildren(
    figure,
    element("span", {}, [element("b", { textContent: s.parasitized }), " parasitized"]),
    element("span", {}, [element("b", { textContent: s.cells }), " cells"]),
    element("span", {}, [element("b", { textContent: s.inconclusive }), " inconclusive"]),
    element("span", {}, [element("b", { textContent: `${s.fields_used} of ${s.fields}` }), " fields usable"]));
  const extra = [];
  if (stageText(s)) extra.push(element("span", {}, ["stages: ", element("b", { textContent: stageText(s) })]));
  if (s.gametocytes_present)
    extra.push(element("span", { className: "gametocytes" }, [element("b", { textContent: "gametocytes present" })]));
  if (s.corrected)
    extra.push(element("span", {}, ["corrected for known errors: ",
      element("b", { textContent: s.corrected.parasitemia_percent.toFixed(2) + "%" }),
      ` (${s.corrected.ci_low.toFixed(2)}-${s.corrected.ci_high.toFixed(2)}%)`]));
  if (s.parasites_per_ul)
    extra.push(element("span", {}, [element("b", { textContent: Math.round(s.parasites_per_ul.value).toLocaleString("en") }),
      " parasites/µL" + (s.parasites_per_ul.rbc_per_ul_assumed ? " (assuming 5,000,000 red cells/µL)" : "")]));
  document.getElementById("slide-summary").append(...extra);
  const byName = new Map(files.map((f) => [f.name, f]));
  fieldList.replaceChildren(...payload.fields.map((f) => renderField(f, byName.get(f.file))));
  for (const e of payload.errors)
    fieldList.append(element("p", { className: "error", textContent: e.error }));
  document.getElementById("field-results").hidden = false;
}

async function screenFields(files) {
  if (!files.length) return;
  const body = new FormData();
  for (const f of files) body.append("file", f, f.name);
  fieldSubmit.disabled = true;
  fieldStatus.className = "";
  fieldStatus.textContent = `Screening ${files.length} field${files.length > 1 ? "s" : ""}…`;
  try {
    const slide = encodeURIComponent(document.getElementById("slide-name").value || "slide");
    const response = await fetch("/api/v1/screen?slide=" + slide, { method: "POST", body, headers: authHeaders() });
    const payload = await response.json();
    if (!payload.fields) throw new Error(payload.error || response.statusText);
    renderSlide(files, payload);
    fieldStatus.textContent = [response.ok ? "Done." : payload.error, ...(payload.slide.warnings || [])].join(" ");
  } catch (err) {
    fieldStatus.textContent = "Error: " + err.message;
    fieldStatus.className = "error";
  } finally {
    fieldSubmit.disabled = false;
  }
}

wireUpload(fieldForm, fieldInput, fieldDrop, screenFields);
