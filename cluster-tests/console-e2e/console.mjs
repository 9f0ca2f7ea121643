// Drives the operator console of a running cluster in Debian's Chromium:
// sign in, create a flag, a refused edit, publish, the kill switch with an
// SDK instance converging, keyboard navigation, history and rollback,
// evaluation, the export download, the audit log and the cluster page.
// A screenshot of every page goes to SHOTS. Any request to another origin
// fails the run. Started by cluster-tests/tests/t92_console.rs, which owns
// the cluster and the SDK instance:
//
//   CONSOLE_URL=http://127.0.0.1:port TOKEN=... ENV=prod SDK_INSTANCE=... SHOTS=dir node console.mjs

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const base = process.env.CONSOLE_URL;
const token = process.env.TOKEN;
const env = process.env.ENV || "prod";
const instance = process.env.SDK_INSTANCE;
const shots = process.env.SHOTS;
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
for (const [name, value] of Object.entries({ CONSOLE_URL: base, TOKEN: token, SDK_INSTANCE: instance, SHOTS: shots })) {
  if (!value) {
    console.error(`console e2e: ${name} is not set`);
    process.exit(2);
  }
}
mkdirSync(shots, { recursive: true });
const origin = new URL(base).origin;
const flag = "console-flag";

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});
const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const foreign = [];
page.on("request", (r) => {
  const url = r.url();
  if (!url.startsWith(origin + "/") && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
});
const consoleErrors = [];
const notFound = [];
page.on("response", (r) => {
  if (r.status() === 404) notFound.push(r.url());
});
// Script errors fail the run; a page answered with an error status (the
// refused sign-in and edit above) is not one.
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.on("dialog", (d) => d.accept());

let n = 0;
async function shot(name) {
  n += 1;
  await page.screenshot({ path: join(shots, `${String(n).padStart(2, "0")}-${name}.png`), fullPage: true });
}

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
    throw e;
  }
}

// The fleet panel's numbers once they show `want` instances on `version`.
async function fleetOn(version, timeout = 20000) {
  await page.waitForFunction(
    ([v]) => {
      const p = document.querySelector("[data-fleet]");
      return p && p.dataset.latest === String(v) && Number(p.dataset.instances) >= 1 &&
        p.dataset.converged === p.dataset.instances;
    },
    [version],
    { timeout },
  );
  return page.locator(".fleet-line").innerText();
}

let published = 0;
let killed = 0;
let exported;

try {
  await step("sign-in", async () => {
    await page.goto(`${base}/console`);
    check(page.url().endsWith("/console/sign-in"), `unauthenticated /console goes to sign-in, got ${page.url()}`);
    await shot("sign-in");
    // A wrong token is refused at the field.
    await page.fill("#token", "not-a-token");
    await page.click("button[type=submit]");
    check((await page.locator("#token-error").innerText()).includes("token"), "a wrong token is refused");
    await page.fill("#token", token);
    await page.click("button[type=submit]");
    await page.waitForURL(`${base}/console`);
    check(await page.locator(`a[href="/console/env/${env}"]`).count() === 1, "the environment is listed");
    await shot("environments");
  });

  await step("create-flag", async () => {
    await page.click(`a[href="/console/env/${env}"]`);
    await page.fill("#new-flag-key", flag);
    await page.fill("input[name=description]", "Made in the console");
    await page.click("text=Create draft");
    await page.waitForURL(new RegExp(`/console/env/${env}/flags/${flag}\\?did=created`));
    check((await page.locator(".badge").first().innerText()).includes("never published"), "a new draft is unpublished");
    await shot("flag-editor");
  });

  await step("refused-edit-shows-the-field", async () => {
    const text = await page.inputValue("#json");
    const draft = JSON.parse(text);
    draft.rules = [{ clauses: [{ attribute: "country", operator: "sounds_like", values: ["NL"] }], serve: { variant: "on" } }];
    await page.fill("#json", JSON.stringify(draft, null, 2));
    await page.click("text=Save JSON");
    const errors = await page.locator("#json-errors").innerText();
    check(errors.includes("/rules/0"), `the error names the rule's path: ${errors}`);
    check(/line \d+/.test(errors), `the error names a line: ${errors}`);
    check(await page.getAttribute("#json", "aria-invalid") === "true", "the JSON field is marked invalid");
    await shot("flag-editor-error");
    // A form edit that is valid.
    await page.goto(`${base}/console/env/${env}/flags/${flag}`);
    await page.fill("#description", "Made and edited in the console");
    await page.selectOption("#default", "on");
    await page.click("text=Save draft");
    await page.waitForURL(/did=saved/);
    check(await page.inputValue("#description") === "Made and edited in the console", "the form edit is saved");
    check((await page.locator("main").innerText()).includes("Never published"), "an unpublished flag has no diff yet");
  });

  await step("publish", async () => {
    await page.fill("#publish-message", "console publish");
    await page.click("text=Publish this flag");
    await page.waitForURL(/did=published/);
    published = Number(new URL(page.url()).searchParams.get("version"));
    check(published > 0, "publish answers a version");
    const line = await fleetOn(published);
    check(line.includes(`on version ${published}`), `the fleet converges on ${published}: ${line}`);
    await shot("flags-published");
    // An edit after publishing shows as a diff against the published flag.
    await page.goto(`${base}/console/env/${env}/flags/${flag}`);
    await page.fill("#description", "Edited after publishing");
    await page.click("text=Save draft");
    await page.waitForURL(/did=saved/);
    const diff = await page.locator("table.diff").innerText();
    check(diff.includes("/description") && diff.includes("Edited after publishing"), `the diff shows the edit: ${diff}`);
    check((await page.locator(".badge").first().innerText()).includes("unpublished changes"), "the badge says so");
    await shot("flag-editor-diff");
    await page.goto(`${base}/console/env/${env}`);
  });

  await step("kill-switch", async () => {
    await page.click(`button[aria-label="Kill ${flag}"]`);
    await page.waitForURL(/did=killed/);
    killed = Number(new URL(page.url()).searchParams.get("version"));
    check(killed > published, `the kill switch makes a new version (${killed} > ${published})`);
    check((await page.locator(".notice").innerText()).includes(`version ${killed}`), "the new version is shown");
    const line = await fleetOn(killed);
    check(line.includes(`on version ${killed}`), `the SDK instance converges on ${killed}: ${line}`);
    check(await page.locator(`tr[data-state="killed"] a:text("${flag}")`).count() === 1, "the flag shows as killed");
    check(await page.locator("button:has-text(\"Publish 1 changed flag\")").count() === 1, "its unpublished edit can still be published");
    await shot("flags-killed");
    await page.click(`a[href="/console/env/${env}/fleet"]`);
    await page.waitForFunction((id) => document.body.innerText.includes(id), instance);
    await shot("fleet");
  });

  await step("keyboard", async () => {
    await page.goto(`${base}/console/env/${env}`);
    await page.keyboard.press("Tab");
    check(await page.evaluate(() => document.activeElement.className) === "skip", "the first Tab reaches the skip link");
    await page.keyboard.press("Enter");
    check(await page.evaluate(() => location.hash) === "#main", "the skip link jumps to the content");
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => document.activeElement.id === "flag-filter");
    }
    check(reached, "Tab reaches the flag search");
    await page.keyboard.type("no-such-flag");
    check(await page.locator(`tr[data-search]:visible`).count() === 0, "typing filters the list");
    await page.keyboard.press("Control+A");
    await page.keyboard.type(flag);
    check(await page.locator(`tr[data-search]:visible`).count() === 1, "the search finds the flag");
    // Tab on to the flag's kill-switch button: it is reachable and labelled.
    reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => (document.activeElement.getAttribute("aria-label") || "").startsWith("Restore"));
    }
    check(reached, "Tab reaches the flag's kill switch");
  });

  await step("evaluate", async () => {
    await page.click(`a[href="/console/env/${env}/evaluate"]`);
    await page.fill("#context", '{"targeting_key": "user-7", "attributes": {"country": "NL"}}');
    await page.click("button:has-text(\"Evaluate\")");
    const rows = await page.locator("#results tbody tr").allInnerTexts();
    check(rows.some((r) => r.includes(flag)), `the flag is evaluated: ${rows.join(" | ")}`);
    await shot("evaluate");
    await page.fill("#context", "{not json");
    await page.click("button:has-text(\"Evaluate\")");
    check((await page.locator("#context-error").innerText()).startsWith("context"), "bad JSON is refused at the field");
  });

  await step("export", async () => {
    await page.goto(`${base}/console/env/${env}`);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("text=Export bootstrap file"),
    ]);
    const path = join(shots, download.suggestedFilename());
    await download.saveAs(path);
    exported = JSON.parse(readFileSync(path, "utf8"));
    check(exported.env === env, "the export is the environment's");
    check(JSON.stringify(exported).includes(flag), "the export holds the flag");
  });

  await step("history-and-rollback", async () => {
    await page.click(`a[href="/console/env/${env}/history"]`);
    await shot("history");
    await page.click(`a[href="/console/env/${env}/history/${published}"]`);
    check((await page.locator("h2").first().innerText()).includes(flag), "the version's diff names the flag");
    await shot("version-diff");
    await page.goBack();
    await page.fill("input[name=message]", "console rollback");
    await page.click("#rollback");
    await page.waitForURL(/did=rolled-back/);
    const v = Number(new URL(page.url()).searchParams.get("version"));
    check(v > killed, `the rollback makes a new version (${v})`);
    await shot("history-rolled-back");
  });

  await step("audit", async () => {
    await page.click("text=Audit log");
    await page.fill("input[name=env]", env);
    await page.click("button:has-text(\"Filter\")");
    const text = await page.locator("#audit").innerText();
    check(text.includes("kill") && text.includes("publish"), "the audit log shows the console's writes");
    await shot("audit");
  });

  await step("cluster", async () => {
    await page.click("nav >> text=Cluster");
    check(await page.locator("#members tbody tr").count() === 3, "three members");
    check((await page.locator("#leader").innerText()).startsWith("node"), "a leader");
    check(await page.locator("text=Add a node").count() === 1, "the admin may add nodes");
    await shot("cluster");
    // Remove a follower (with the confirmation dialog): two members remain.
    const leader = (await page.locator("#leader").innerText()).replace("node ", "");
    const follower = ["1", "2", "3"].find((id) => id !== leader && id !== "2");
    await page.click(`button[aria-label="Remove node ${follower}"]`);
    await page.waitForURL(/did=removed/);
    check((await page.locator(".notice").innerText()).includes(`Removed node ${follower}`), "the removal is reported");
    check(await page.locator("#members tbody tr").count() === 2, "two members remain");
    await shot("cluster-node-removed");
  });

  await step("sign-out", async () => {
    await page.click("text=Sign out");
    await page.waitForURL(/sign-in/);
    await page.goto(`${base}/console/cluster`);
    check(page.url().endsWith("/console/sign-in"), "signed out");
  });

  check(!notFound.length, `no missing pages or assets, saw: ${notFound.join(", ")}`);
  check(foreign.length === 0, `no requests to other origins, saw: ${foreign.join(", ")}`);
  check(consoleErrors.length === 0, `no script errors, saw: ${consoleErrors.join(" | ")}`);
  console.log(`CONSOLE_E2E ok published=${published} killed=${killed} screenshots=${n}`);
} catch (e) {
  console.log(`CONSOLE_E2E failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
