// Slides: the lab's records. List and create slides, upload fields (each with an Idempotency-Key,
// retried on failure), review the flagged cells with mouse or keyboard, sign, and get reports.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    for (const child of children) node.append(child);
    return node;
  };
  const headers = (extra = {}) => {
    const key = $("api-key").value.trim();
    return Object.assign(key ? { Authorization: "Bearer " + key } : {}, extra);
  };
  async function api(path, options = {}) {
    const response = await fetch(path, Object.assign({}, options, { headers: headers(options.headers) }));
    const type = response.headers.get("Content-Type") || "";
    const body = type.includes("json") ? await response.json() : await response.blob();
    if (!response.ok) {
      const error = new Error((body && body.error) || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  const pct = (x) => (x < 1 ? x.toFixed(3) : x.toFixed(2)) + "%";
  const STAGES = ["ring", "trophozoite", "schizont", "gametocyte"];

  let me = null;
  let slide = null; // the open slide, as GET /api/v1/slides/{id} answers
  let queue = []; // [{cell, field, why}]
  let current = 0;
  const fieldImages = new Map(); // field id -> ImageBitmap

  async function start() {
    try {
      me = await api("/api/v1/me");
    } catch (err) {
      if (err.status === 404) { $("slides-off").hidden = false; return; }
      $("slides-off").hidden = false;
      $("slides-off").textContent = "Slides: " + err.message + " (enter your token under API key, then Refresh).";
      $("slides-on").hidden = false;
      return;
    }
    if (!me.records) { $("slides-off").hidden = false; return; }
    $("slides-off").hidden = true;
    $("slides-on").hidden = false;
    $("whoami").textContent = `Signed in as ${me.name} (${me.role})` + (me.sites.length ? `, sites ${me.sites.join(", ")}` : "") +
      (me.token_expires_at ? `; token valid until ${me.token_expires_at.replace("T", " ").replace("Z", " UTC")}` : "");
    await listSlides();
    const wanted = location.hash.match(/^#slide=(\w+)/);
    if (wanted) await openSlide(wanted[1]);
  }

  async function listSlides() {
    const status = $("slide-filter").value;
    const data = await api("/api/v1/slides?limit=100" + (status ? "&status=" + status : ""));
    const rows = $("slide-rows");
    rows.replaceChildren();
    for (const s of data.slides) {
      const link = el("a", { href: "#slide=" + s.id, textContent: s.sample_id });
      link.addEventListener("click", (e) => { e.preventDefault(); location.hash = "slide=" + s.id; openSlide(s.id); });
      rows.append(el("tr", { className: "slide-row" }, [
        el("td", {}, [link]), el("td", { textContent: s.site }),
        el("td", {}, [el("span", { className: "badge status-" + s.status, textContent: s.status.replace("_", " ") })]),
        el("td", { textContent: s.field_count }), el("td", { textContent: s.created_at.replace("T", " ").replace("Z", "") })]));
    }
  }

  async function createSlide(event) {
    event.preventDefault();
    const form = new FormData($("new-slide"));
    const body = {};
    for (const [k, v] of form.entries()) if (v !== "") body[k] = k === "rbc_per_ul" ? Number(v) : v;
    try {
      const s = await api("/api/v1/slides", { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      $("new-slide-status").textContent = "Created " + s.sample_id;
      $("new-slide").reset();
      await listSlides();
      location.hash = "slide=" + s.id;
      await openSlide(s.id);
    } catch (err) {
      $("new-slide-status").textContent = err.message;
    }
  }

  async function openSlide(id) {
    slide = await api("/api/v1/slides/" + id);
    const cells = new Map();
    for (const f of slide.fields) for (const c of f.cells) cells.set(c.id, { cell: c, field: f });
    queue = slide.review_queue.map((q) => Object.assign({ why: q.why }, cells.get(q.cell_id)));
    current = Math.min(current, Math.max(0, queue.length - 1));
    renderSlide();
    await renderGallery();
  }

  function renderSlide() {
    $("slide-view").hidden = false;
    $("slide-view-title").textContent = `Slide ${slide.sample_id}`;
    $("slide-view-title").append(" ", el("span", { className: "badge status-" + slide.status, id: "slide-status", textContent: slide.status.replace("_", " ") }));
    $("slide-meta").textContent = [slide.site && "site " + slide.site, slide.operator && "operator " + slide.operator,
      slide.stain, slide.collected_on && "collected " + slide.collected_on, slide.signed_by && `signed by ${slide.signed_by} ${slide.signed_at}`]
      .filter(Boolean).join(" · ");
    const sum = slide.summary;
    const row = (name, side) => el("tr", { className: "figures-" + name.toLowerCase() }, [
      el("th", { textContent: name }),
      el("td", { textContent: `${pct(side.parasitemia_percent)} (${pct(side.ci_low)}–${pct(side.ci_high)})` }),
      el("td", { textContent: Math.round(side.parasites_per_ul.value).toLocaleString("en") + (sum.rbc_per_ul_assumed ? " (RBC assumed)" : "") }),
      el("td", { textContent: `${side.parasitized} / ${side.cells}` }),
      el("td", { textContent: STAGES.filter((s) => side.stages[s]).map((s) => `${s} ${side.stages[s]}`).join(", ") || "-" })]);
    $("slide-figures").replaceChildren(row("Model", sum.model), row("Reviewed", sum.reviewed));
    const failed = sum.fields_failed.map((f) => `${f.file}: ${f.reasons.join("; ")}`).join(" · ");
    $("slide-review-state").textContent = `${sum.fields_used} of ${sum.fields} fields used` + (failed ? ` (not used: ${failed})` : "") +
      `. ${sum.reviewed.cells_reviewed} cells reviewed, ${sum.reviewed.pending} flagged cells to review.` + (sum.warning ? " " + sum.warning : "");
    $("slide-fields").replaceChildren(...slide.fields.map((f) => el("tr", { className: "field-row" }, [
      el("td", { textContent: f.seq }),
      el("td", { textContent: f.file }),
      el("td", { textContent: f.quality.verdict + (f.quality.reasons.length ? ": " + f.quality.reasons.join("; ") : "") }),
      el("td", { textContent: f.summary.cells }),
      el("td", { textContent: f.summary.parasitized }),
      el("td", { textContent: f.model_id })])));
        const signable = me.may_review && sum.reviewed.pending === 0 && slide.field_count > 0 && slide.status !== "signed";
    $("sign-slide").disabled = !signable;
    $("sign-slide").title = signable ? "" : me.may_review ? "review every flagged cell first" : "only a reviewer signs";
    $("slide-upload").hidden = slide.status === "signed" || slide.status === "amended";
    $("amend-box").hidden = !(slide.status === "signed" || slide.status === "amended");
    for (const b of document.querySelectorAll(".review-buttons button")) b.disabled = !me.may_review;
  }

  async function fieldImage(fieldId) {
    if (!fieldImages.has(fieldId)) {
      const field = slide.fields.find((f) => f.id === fieldId);
      const browserFormat = field && ["jpeg", "png", "bmp"].includes(field.image_format);
      const blob = await api(`/api/v1/fields/${fieldId}/image` + (browserFormat ? "" : "?format=jpeg"));
      fieldImages.set(fieldId, await createImageBitmap(blob));
    }
    return fieldImages.get(fieldId);
  }

  function drawCell(canvas, bitmap, cell) {
    const b = cell.box;
    const margin = Math.round(Math.max(b.w, b.h) / 4);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(bitmap, b.x - margin, b.y - margin, b.w + 2 * margin, b.h + 2 * margin, 0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "rgba(0,0,0,0.5)";
    const s = canvas.width / (b.w + 2 * margin);
    ctx.strokeRect(margin * s, margin * s, b.w * s, b.h * s);
  }

  const verdict = (c) => (c.review ? c.review.decision + (c.review.stage ? " · " + c.review.stage : "") : null);

  async function renderGallery() {
    const gallery = $("review-gallery");
    gallery.replaceChildren();
    for (const [i, item] of queue.entries()) {
      const canvas = el("canvas", { width: 96, height: 96 });
      const label = verdict(item.cell) || `${item.cell.decision}${item.cell.stage ? " · " + item.cell.stage : ""}`;
      const tile = el("figure", { className: "tile" + (item.cell.review ? " reviewed" : "") + (i === current ? " current" : ""), tabIndex: -1 }, [
        canvas, el("figcaption", {}, [el("span", { className: "why", textContent: item.why }), el("br"), el("span", { className: "call", textContent: label })])]);
      tile.setAttribute("role", "option");
      tile.dataset.cell = item.cell.id;
      tile.addEventListener("click", () => { current = i; focusCell(); });
      gallery.append(tile);
      fieldImage(item.field.id).then((bmp) => drawCell(canvas, bmp, item.cell)).catch(() => {});
    }
    await focusCell();
  }

  async function focusCell() {
    for (const [i, t] of [...$("review-gallery").children].entries()) t.classList.toggle("current", i === current);
    const item = queue[current];
    if (!item) { $("focus-caption").textContent = "No cells to review."; return; }
    $("review-gallery").children[current].scrollIntoView({ block: "nearest" });
    const c = item.cell;
    $("focus-caption").textContent = `Field ${item.field.seq}, cell ${current + 1} of ${queue.length}: model ${c.decision}` +
      ` (P(parasitized) ${(100 * c.probability_parasitized).toFixed(1)}%${c.stage ? ", " + c.stage : ""})` +
      (c.review ? `; reviewed ${verdict(c)} by ${c.review.by}` : "; not reviewed");
    const canvas = $("focus-canvas");
    if ($("focus-gradcam").checked) {
      try {
        const png = await api(`/api/v1/cells/${c.id}/explanation`);
        const bmp = await createImageBitmap(png);
        canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
        canvas.dataset.shows = "gradcam";
        return;
      } catch (err) {
        $("focus-caption").textContent += " (Grad-CAM: " + err.message + ")";
      }
    }
    drawCell(canvas, await fieldImage(item.field.id), c);
    canvas.dataset.shows = "cell";
  }

  async function review(action, stage) {
    const item = queue[current];
    if (!item || !me.may_review) return;
    const c = item.cell;
    const modelSide = c.label || "Uninfected";
    let decision = action;
    if (action === "confirm") decision = c.review ? c.review.decision : modelSide;
    if (action === "flip") decision = (c.review ? c.review.decision : modelSide) === "Parasitized" ? "Uninfected" : "Parasitized";
    if (stage) decision = "Parasitized";
    const body = { decision };
    if (stage) body.stage = stage;
    else if (decision === "Parasitized" && action === "confirm" && (c.review ? c.review.stage : c.stage)) body.stage = c.review ? c.review.stage : c.stage;
    if (!$("amend-box").hidden) body.reason = $("amend-reason").value.trim();
    try {
      await api(`/api/v1/cells/${c.id}/review`, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
      if (current < queue.length - 1) current++;
      await openSlide(slide.id);
    } catch (err) {
      $("focus-caption").textContent = err.message;
    }
  }

  // One request per field, so that each has its own progress, error and Idempotency-Key; a
  // failed request is retried with the same key (the server stores the field at most once).
  async function uploadFields(event) {
    event.preventDefault();
    const files = [...$("slide-files").files];
    const status = $("slide-upload-status");
    let done = 0, failed = 0;
    for (const file of files) {
      const key = crypto.randomUUID();
      let ok = false;
      for (let attempt = 0; attempt < 4 && !ok; attempt++) {
        status.textContent = `Screening ${file.name} (${done + 1} of ${files.length})` + (attempt ? `, retry ${attempt}` : "");
        const form = new FormData();
        form.append("file", file, file.name);
        try {
          await api(`/api/v1/slides/${slide.id}/fields`, { method: "POST", body: form, headers: { "Idempotency-Key": key } });
          ok = true;
        } catch (err) {
          const retriable = !err.status || err.status >= 500;  // network failure or server trouble
          if (!retriable) { status.textContent = `${file.name}: ${err.message}`; break; }
        }
      }
      done++;
      if (!ok) failed++;
    }
    status.textContent = `${done - failed} of ${files.length} fields stored` + (failed ? `, ${failed} failed` : "");
    $("slide-files").value = "";
    await openSlide(slide.id);
    await listSlides();
  }

  // Without a token the report opens at its own URL; a token cannot go into a URL, so then it is
  // fetched and shown as a blob, which inherits this page's CSP (that allows the report's styles).
  async function openReport(format) {
    const url = `/api/v1/slides/${slide.id}/report?format=${format}`;
    if (!$("api-key").value.trim()) { window.open(url, "_blank"); return; }
    window.open(URL.createObjectURL(await api(url)), "_blank");
  }

  async function downloadAnnotations() {
    const blob = await api(`/api/v1/slides/${slide.id}/annotations.csv`);
    const link = el("a", { href: URL.createObjectURL(blob), download: `${slide.id}-annotations.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  }

  async function showAudit() {
    const list = $("audit-list");
    list.hidden = !list.hidden;
    if (list.hidden) return;
    const data = await api(`/api/v1/slides/${slide.id}/audit`);
    list.replaceChildren(...data.events.map((e) => el("li", {
      textContent: `${e.at} ${e.user} ${e.action}` + (e.cell_id ? ` cell ${e.cell_id}` : "") +
        (e.before && e.before.decision ? `: ${e.before.review ? e.before.review.decision : e.before.decision} → ${e.after.review.decision}` : "") +
        (e.after && e.after.reason ? ` (reason: ${e.after.reason})` : "") })));
  }

  $("new-slide").addEventListener("submit", createSlide);
  $("slides-refresh").addEventListener("click", () => start());
  $("slide-filter").addEventListener("change", listSlides);
  $("slide-upload").addEventListener("submit", uploadFields);
  $("sign-slide").addEventListener("click", async () => {
    try {
      await api(`/api/v1/slides/${slide.id}/sign`, { method: "POST" });
      await openSlide(slide.id);
      await listSlides();
    } catch (err) {
      $("slide-review-state").textContent = err.message;
    }
  });
  $("report-html").addEventListener("click", () => openReport("html"));
  $("report-pdf").addEventListener("click", () => openReport("pdf"));
  $("report-fhir").addEventListener("click", () => openReport("fhir"));
  $("export-annotations").addEventListener("click", downloadAnnotations);
  $("show-audit").addEventListener("click", showAudit);
  $("focus-gradcam").addEventListener("change", focusCell);
  for (const b of document.querySelectorAll(".review-buttons button"))
    b.addEventListener("click", () => review(b.dataset.decision || null, b.dataset.stage || null));
  $("review-gallery").addEventListener("keydown", (e) => {
    const keys = { c: ["confirm"], x: ["flip"], n: ["Not a cell"], 1: [null, "ring"], 2: [null, "trophozoite"], 3: [null, "schizont"], 4: [null, "gametocyte"] };
    if (e.key === "ArrowRight" || e.key === "ArrowDown") { current = Math.min(queue.length - 1, current + 1); focusCell(); }
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") { current = Math.max(0, current - 1); focusCell(); }
    else if (e.key.toLowerCase() === "g") { $("focus-gradcam").checked = !$("focus-gradcam").checked; focusCell(); }
    else if (keys[e.key.toLowerCase()]) review(...keys[e.key.toLowerCase()]);
    else return;
    e.preventDefault();
  });
  start();
})();
