// Browser test: Playwright drives Debian's Chromium against the real server.
// Usage: node page_test.mjs BASE_URL WEB_DIR IMAGE... (last image may be a non-image file)
import { createRequire } from "node:module";
import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import assert from "node:assert/strict";

const [base, webDir, screenshotDir, ...images] = process.argv.slice(2);
const require = createRequire(webDir + "/package.json");
const { chromium } = require("playwright-core");
mkdirSync(screenshotDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (err) {
    failures++;
    console.log(`not ok - ${name}\n  ${String(err.stack || err).split("\n").join("\n  ")}`);
  }
}

// What the API says about the same files, to compare with what the page shows.
async function apiResults(files) {
  const form = new FormData();
  for (const f of files) form.append("file", new Blob([readFileSync(f)]), basename(f));
  const response = await fetch(base + "/api/v1/predict", { method: "POST", body: form });
  return (await response.json()).results;
}

await check("upload page shows the same results as the API", async () => {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 1000 } });
  const page = await context.newPage();
  const externalRequests = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) externalRequests.push(r.url()); });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  await page.goto(base + "/");
  await assert.doesNotReject(page.getByText("does not replace a trained microscopist").first().waitFor());
  await page.locator("#model-info dd").nth(1).waitFor();
  assert.match(await page.locator("#model-info").innerText(), /cellnet|seed/);

  // Beside the real cells, an image that is no cell at all (8x8 of solid purple): Rejected.
  const notACell = `${screenshotDir}/not-a-cell.png`;
  writeFileSync(notACell, Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAK0lEQVQIHW3BAQEAAADBMHoJ9iTyKmAzqR6T6jGpHpPqMakek+oxqR6T6hl3IApZPIs5TgAAAABJRU5ErkJggg==", "base64"));
  images.push(notACell);
  await page.setInputFiles("#file-input", images);
  await page.click("#submit");
  await page.locator("#result-rows tr").nth(images.length - 1).waitFor();
  const rows = await page.locator("#result-rows tr").allInnerTexts();
  const expected = await apiResults(images);
  assert.equal(rows.length, expected.length);
  expected.forEach((r, i) => {
    assert.ok(rows[i].includes(r.filename), `row ${i} names ${r.filename}`);
    if (r.error) {
      assert.ok(rows[i].includes("Error"), `row ${i} shows the error`);
    } else if (r.decision === "Rejected") {
      assert.ok(rows[i].includes("Rejected") && rows[i].includes(r.reason), `row ${i} shows why it was rejected: ${rows[i]}`);
      assert.ok(!rows[i].includes("%"), `row ${i} shows no probability: ${rows[i]}`);
    } else {
      assert.ok(rows[i].includes(r.decision), `row ${i} shows decision ${r.decision}: ${rows[i]}`);
      assert.ok(rows[i].includes((100 * r.probability_parasitized).toFixed(2) + "%"), `row ${i} probability: ${rows[i]}`);
    }
  });
  const decoded = expected.filter((r) => !r.error);
  const good = decoded.filter((r) => r.decision !== "Rejected");
  assert.equal(expected[expected.length - 1].decision, "Rejected", "the solid square is rejected");
  const parasitized = good.filter((r) => r.label === "Parasitized").length;
  const summary = await page.locator("#summary").innerText();
  assert.match(summary, new RegExp(`${good.length}\\s+cells`));
  assert.match(summary, new RegExp(`${parasitized}\\s+parasitized`));
  assert.match(summary, /1\s+rejected/);
  assert.equal(await page.locator("#result-rows img").count(), decoded.length, "a thumbnail per decoded image");
  await page.screenshot({ path: `${screenshotDir}/upload-results.png`, fullPage: true });

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-csv")]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  assert.equal(csv[0], "filename,label,probability_parasitized,confidence,decision,reason,error");
  assert.equal(csv.length, images.length + 1);

  // "Show where": the page asks again with ?explain=1 and lays a heat map over each thumbnail.
  const explainRequest = page.waitForRequest((r) => r.url().includes("/api/v1/predict?explain=1"));
  await page.check("#show-where");
  await explainRequest;
  await page.locator("#result-rows img.heat").nth(good.length - 1).waitFor();
  assert.equal(await page.locator("#result-rows img.heat").count(), good.length, "a heat map per cell");
  assert.ok(await page.locator("#result-rows img.heat").first().isVisible(), "heat maps shown");
  await page.screenshot({ path: `${screenshotDir}/show-where.png`, fullPage: true });
  await page.locator("#result-rows button.thumb").first().click();
  await page.locator("#cell-view").waitFor({ state: "visible" });
  assert.match(await page.locator("#cell-view-image").getAttribute("src"), /^data:image\/png;base64,/);
  assert.match(await page.locator("#cell-view-caption").innerText(), /P\(Parasitized\)/);
  await page.screenshot({ path: `${screenshotDir}/cell-enlarged.png` });
  await page.locator("#cell-view button").click();
  await page.uncheck("#show-where");
  assert.ok(!(await page.locator("#result-rows img.heat").first().isVisible()), "heat maps hidden again");

  assert.deepEqual(externalRequests, [], "no external resources");
  assert.deepEqual(consoleErrors, [], "no console errors (e.g. CSP violations)");
  await context.close();
});

const field = process.env.FIELD_IMAGE;
await check("a smear field shows its cells, the slide's parasitemia and an enlarged cell", async () => {
  assert.ok(field, "FIELD_IMAGE is set");
  const form = new FormData();
  form.append("file", new Blob([readFileSync(field)]), basename(field));
  const api = await (await fetch(base + "/api/v1/screen", { method: "POST", body: form })).json();
  assert.equal(api.fields.length, 1);
  const context = await browser.newContext({ viewport: { width: 1100, height: 1000 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  await page.goto(base + "/");
  await page.setInputFiles("#field-input", field);
  await page.fill("#slide-name", "browser-slide");
  await page.click("#field-submit");
  await page.locator("#field-list figure").waitFor();
  const f = api.fields[0];
  assert.equal(await page.locator("#field-list button.cell-box").count(), f.cells.length, "a box per counted cell");
  assert.equal(await page.locator("#field-list span.cell-box.excluded").count(), f.excluded_cells.length);
  const summary = await page.locator("#slide-summary").innerText();
  assert.match(summary, new RegExp(`${f.summary.parasitemia_percent.toFixed(2)}% parasitemia \\(95% CI`));
  assert.match(summary, new RegExp(`${f.summary.cells} cells`));
  // Stages from the detector: the slide's counts, and each numbered call's stage initial.
  assert.ok(api.slide.stages, "the bundled detector tells stages");
  if (f.summary.parasitized > 0) assert.match(summary, /stages: \d+ (ring|trophozoite|schizont|gametocyte)/);
  assert.match(summary, /parasites\/µL \(assuming 5,000,000 red cells\/µL\)/);
  const called = f.cells.filter((c) => c.number);
  assert.ok(called.length > 0, "the test field has Parasitized calls to check");
  for (const c of called) {
    const text = await page.locator("#field-list button.cell-box").nth(f.cells.indexOf(c)).innerText();
    assert.equal(text, `${c.number}${c.stage[0].toUpperCase()}`);
  }
  const target = f.cells.findIndex((c) => c.label === "Parasitized");
  await page.locator("#field-list button.cell-box").nth(Math.max(0, target)).click();
  await page.locator("#cell-view").waitFor({ state: "visible" });
  assert.match(await page.locator("#cell-view-image").getAttribute("src"), /^data:image\/png;base64,/);
  assert.match(await page.locator("#cell-view-caption").innerText(), /P\(Parasitized\)/);
  await page.screenshot({ path: `${screenshotDir}/field-cell-enlarged.png` });
  await page.locator("#cell-view button").click();
  await page.locator(".fields").screenshot({ path: `${screenshotDir}/smear-field.png` });

  // A blank photo fails its quality verdict: the page says why and shows no parasitemia.
  const blank = await page.evaluate(() => {
    const canvas = document.createElement("canvas");
    canvas.width = 640;
    canvas.height = 480;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#e6e6e6";
    ctx.fillRect(0, 0, 640, 480);
    return canvas.toDataURL("image/png").split(",")[1];
  });
  await page.setInputFiles("#field-input", { name: "blank.png", mimeType: "image/png", buffer: Buffer.from(blank, "base64") });
  await page.click("#field-submit");
  await page.locator("#field-list figcaption.quality-fail").waitFor();
  assert.match(await page.locator("#field-list figcaption").first().innerText(), /not counted \(.*no red cells found/);
  assert.match(await page.locator("#slide-summary").innerText(), /No usable field: no parasitemia/);
  await page.locator(".fields").screenshot({ path: `${screenshotDir}/smear-field-failed-quality.png` });
  assert.deepEqual(consoleErrors, [], "no console errors");
  await context.close();
});

await check("the form works without JavaScript", async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(base + "/");
  await page.setInputFiles("#file-input", images[0]);
  await Promise.all([page.waitForURL(/\/predict\/$/), page.click("#submit")]);
  const text = await page.locator("body").innerText();
  const [expected] = await apiResults([images[0]]);
  const confidence = (100 * expected.confidence).toFixed(2);
  assert.ok(text.includes(`Prediction: ${expected.label} (Confidence: ${confidence}%)`), text);
  assert.equal(await page.locator("img.result-image").count(), 1);
  await page.screenshot({ path: `${screenshotDir}/no-javascript-result.png`, fullPage: true });
  await context.close();
});

await check("API docs render offline", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) external.push(r.url()); });
  await page.goto(base + "/docs");
  await page.getByText("/api/v1/predict").first().waitFor({ timeout: 15000 });
  assert.deepEqual(external, []);
  await page.screenshot({ path: `${screenshotDir}/api-docs.png` });
  await context.close();
});

await browser.close();
console.log(`${4 - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
