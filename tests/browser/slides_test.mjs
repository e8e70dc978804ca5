// Browser test of the lab workflow: Playwright drives Debian's Chromium against the real server
// with records. A newcomer's path: create a slide, upload fields, review every flagged cell with
// the keyboard, sign, open the report, export the corrections, restart the server and find it all.
// Usage: node slides_test.mjs MALARIA_BIN MODEL WEB_DIR SCREENSHOT_DIR FIELD_IMAGE...
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const [bin, model, webDir, shots, ...fields] = process.argv.slice(2);
const require = createRequire(webDir + "/package.json");
const { chromium } = require("playwright-core");
mkdirSync(shots, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), "malaria-slides-"));
const store = "sqlite:" + join(dir, "records.db");

const freePort = () => new Promise((resolve) => {
  const s = createServer();
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
async function startServer(...extra) {
  const port = await freePort();
  const child = spawn(bin, ["serve", "--model", model, "--port", String(port), "--store", store, ...extra],
                      { stdio: "ignore" });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {  // until /ready answers: a state, not a time
    try { if ((await fetch(base + "/ready")).ok) return { child, base }; } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("server never became ready");
}
const stopServer = (server) => new Promise((resolve) => { server.child.on("exit", resolve); server.child.kill("SIGTERM"); });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
});
let failures = 0;
let server = await startServer();
try {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 1100 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  await page.goto(server.base + "/#slides");
  await page.locator("#whoami").getByText("Signed in as local").waitFor();

  // Create a slide.
  await page.click("#new-slide-box summary");
  await page.fill("#new-slide [name=sample_id]", "LAB-2026-0042");
  await page.fill("#new-slide [name=site]", "north");
  await page.fill("#new-slide [name=operator]", "amy");
  await page.fill("#new-slide [name=collected_on]", "2026-11-29");
  await page.click("#new-slide button[type=submit]");
  await page.locator("#slide-view-title").getByText("LAB-2026-0042").waitFor();

  // Upload two fields; each is screened and stored.
  await page.setInputFiles("#slide-files", fields);
  await page.click("#slide-upload button[type=submit]");
  await page.locator("#slide-upload-status").getByText(`${fields.length} of ${fields.length} fields stored`).waitFor({ timeout: 120000 });
  assert.equal(await page.locator("#slide-fields .field-row").count(), fields.length, "one row per field");
  const tiles = page.locator("#review-gallery .tile");
  await tiles.first().waitFor();
  const flagged = await tiles.count();
  assert.ok(flagged >= 10, `review gallery has the flagged cells and a QC sample (${flagged})`);
  assert.ok(await page.locator("#sign-slide").isDisabled(), "cannot sign before the review");
  await page.screenshot({ path: `${shots}/slide-review.png`, fullPage: true });

  // Review everything from the keyboard: the first flagged cell is turned down (X), the second
  // gets a stage (1: ring), the rest are confirmed (C).
  await page.locator("#review-gallery").focus();
  await page.keyboard.press("g");  // Grad-CAM of the current cell
  await page.locator("#focus-canvas[data-shows=gradcam]").waitFor();
  await page.locator("#review-focus").screenshot({ path: `${shots}/slide-review-gradcam.png` });
  await page.locator("#review-gallery").focus();
  await page.keyboard.press("g");
  await page.locator("#focus-canvas[data-shows=cell]").waitFor();
  for (let i = 0; i < flagged; i++) {
    const key = i === 0 ? "x" : i === 1 ? "1" : "c";
    await page.locator("#review-gallery").focus();
    await page.keyboard.press(key);
    await page.locator("#review-gallery .tile.reviewed").nth(i).waitFor();
  }
  await page.locator("#slide-review-state").getByText("0 flagged cells to review").waitFor();
  const figures = await page.locator("#slide-figures").innerText();
  assert.match(figures, /Model[\s\S]*Reviewed/);
  await page.click("#sign-slide");
  await page.locator("#slide-status").getByText("signed").waitFor();
  await page.screenshot({ path: `${shots}/slide-signed.png`, fullPage: true });
  assert.ok(await page.locator("#slide-upload").isHidden(), "no uploads to a signed slide");

  // The report opens in a new tab; the corrections download as annotations.csv.
  const [report] = await Promise.all([context.waitForEvent("page"), page.click("#report-html")]);
  await report.waitForLoadState();
  await report.getByText("Malaria screening report").waitFor();
  assert.match(await report.locator("body").innerText(), /LAB-2026-0042[\s\S]*Reviewed and signed[\s\S]*local/);
  const h1Size = () => report.locator("h1").evaluate((h) => getComputedStyle(h).fontSize);
  assert.equal(await h1Size(), "21.3333px");  // 16pt: the report's own style block applies
  await report.screenshot({ path: `${shots}/slide-report.png`, fullPage: true });
  await report.close();
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-annotations")]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv, /^image,x,y,w,h,label,group\n/);
  assert.match(csv, /,ring,/);
  await page.click("#show-audit");
  await page.locator("#audit-list li").getByText("sign").waitFor();
  assert.deepEqual(consoleErrors, []);
  await context.close();

  // Restart: the slide is still there, signed, with its reviews.
  await stopServer(server);
  server = await startServer();
  const again = await browser.newPage({ viewport: { width: 1200, height: 1100 } });
  await again.goto(server.base + "/#slides");
  await again.locator("#slide-rows").getByText("LAB-2026-0042").click();
  await again.locator("#slide-status").getByText("signed").waitFor();
  assert.equal(await again.locator("#review-gallery .tile.reviewed").count(), flagged);
  await again.screenshot({ path: `${shots}/slide-after-restart.png`, fullPage: true });
  await again.close();

  // With an API key the page fetches the report and opens it as a blob, which inherits the page's
  // CSP: the report must keep its styles there too.
  await stopServer(server);
  server = await startServer("--api-key", "browser-test-key");
  const keyed = await browser.newContext({ viewport: { width: 1200, height: 1100 } });
  const keyedPage = await keyed.newPage();
  const keyedErrors = [];
  keyedPage.on("console", (m) => { if (m.type() === "error") keyedErrors.push(m.text()); });
  await keyedPage.goto(server.base + "/#slides");
  await keyedPage.locator("#slides-off").getByText("enter your token").waitFor();  // no key yet
  keyedErrors.length = 0;  // that refusal is logged; nothing after the key may be
  await keyedPage.click(".api-key summary");
  await keyedPage.fill("#api-key", "browser-test-key");
  await keyedPage.click("#slides-refresh");
  await keyedPage.locator("#slide-rows").getByText("LAB-2026-0042").click();
  await keyedPage.locator("#slide-status").getByText("signed").waitFor();
  const [blobReport] = await Promise.all([keyed.waitForEvent("page"), keyedPage.click("#report-html")]);
  await blobReport.getByText("Malaria screening report").waitFor();
  assert.match(blobReport.url(), /^blob:/);
  assert.equal(await blobReport.locator("h1").evaluate((h) => getComputedStyle(h).fontSize), "21.3333px");
  assert.deepEqual(keyedErrors, []);
  await keyed.close();
  console.log(`ok - slide workflow (${flagged} cells reviewed), screenshots in ${shots}`);
} catch (err) {
  failures++;
  console.log(`not ok - slide workflow\n  ${String(err.stack || err).split("\n").join("\n  ")}`);
} finally {
  await browser.close();
  await stopServer(server);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failures ? 1 : 0);
