// The demo page (`/demo`) in a real browser: Debian's chromium driven by playwright-core, against a
// real herald in embedded mode. Run with `npm run test:demo` (scripts/test.sh does); needs the herald
// binary (see heraldBinary in ./herald.ts) and /usr/bin/chromium (scripts/infra/packages.sh --browser).
// Leaves screenshots under target/demo/ (paths printed).
//
// Also checks that the page's compiled JavaScript, checked in under service/demo/js/ and compiled into
// herald, is what `npm run build:demo` makes of the sources today.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Browser, type Page, chromium } from "playwright-core";
import { NotificationName } from "../src/index.js";
import { Herald } from "./herald.js";

/** clients/typescript/ (this file runs from clients/typescript/build/test/). */
const PACKAGE = fileURLToPath(new URL("../../", import.meta.url));
const ROOT = join(PACKAGE, "../../");
const COMPILED = join(ROOT, "service/demo/js");
const ARTIFACTS = join(ROOT, "target/demo");
const CHROMIUM = "/usr/bin/chromium";
const INGEST_TOKEN = "herald-demo-test-ingest";

let browser: Browser | undefined;
let herald: Herald | undefined;

after(async () => {
  await browser?.close();
  await herald?.kill();
});

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

test("the demo page's checked-in JavaScript is what npm run build:demo makes", () => {
  const fresh = mkdtempSync(join(tmpdir(), "herald-demo-js-"));
  try {
    execFileSync(join(PACKAGE, "node_modules/.bin/tsc"), ["-p", "tsconfig.demo.json", "--outDir", fresh], {
      cwd: PACKAGE,
      stdio: "inherit",
    });
    const expected = files(fresh);
    const hint = "run `(cd clients/typescript && npm run build:demo)` and commit service/demo/js";
    assert.deepEqual(files(COMPILED), expected, `service/demo/js has other files than the build makes: ${hint}`);
    for (const file of expected) {
      const same = readFileSync(join(fresh, file), "utf8") === readFileSync(join(COMPILED, file), "utf8");
      assert.ok(same, `service/demo/js/${file} is stale: ${hint}`);
    }
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
});

/** What the page shows: its connection state and the notifications it rendered. */
interface Shown {
  state: string | undefined;
  notifications: { id: string; event: string; category: string | undefined; priority: string | undefined }[];
  notice: string;
}

async function shown(page: Page): Promise<Shown> {
  return page.evaluate(() => ({
    state: document.getElementById("state")?.dataset["state"],
    notifications: Array.from(document.querySelectorAll<HTMLElement>("li.notification"), (item) => ({
      id: item.dataset["id"] ?? "",
      event: item.dataset["event"] ?? "",
      category: item.closest<HTMLElement>("section.category")?.dataset["category"],
      priority: /\bpriority-(\w+)/.exec(item.className)?.[1],
    })),
    notice: document.getElementById("notice")?.textContent ?? "",
  }));
}

/** Waits until the page shows what `condition` wants; fails with what it showed last. */
async function until(page: Page, what: string, condition: (shown: Shown) => boolean, timeoutMs = 15_000): Promise<Shown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await shown(page);
    if (condition(now)) return now;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the page shows ${JSON.stringify(now)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function screenshot(page: Page, name: string, t: { diagnostic(message: string): void }): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  t.diagnostic(`screenshot: ${path}`);
  console.log(`demo page screenshot: ${path}`);
}

test("the demo page shows one notification of each kind, and what was sent while herald restarted", async (t) => {
  herald = await Herald.start(["--ingest-token", INGEST_TOKEN]);
  const server = herald;
  // The welcome text names the page.
  const url = `${server.http}/demo`;
  const deadline = Date.now() + 5_000;
  while (!server.output.includes(url) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(server.output.includes(url), `herald's welcome text does not name ${url}:\n${server.output}`);

  // The samples come from the definitions: one per notification name the generated client knows.
  const config = (await (await fetch(`${server.http}/demo/config.json`)).json()) as {
    samples: { notification: string; category: string; priority: string }[];
  };
  const kinds = NotificationName.length;
  assert.deepEqual(config.samples.map((sample) => sample.notification).sort(), [...NotificationName].sort());
  const sampleOf = new Map(config.samples.map((sample) => [sample.notification, sample]));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  await page.goto(url);
  await until(page, "the page to connect", (now) => now.state === "open");

  // The ingest token this herald requires, typed where the page asks for it; then one of each.
  await page.fill("#ingest-token", INGEST_TOKEN);
  await page.click("#send-all");
  const first = await until(page, `${kinds} notifications`, (now) => now.notifications.length >= kinds);
  assert.equal(first.notifications.length, kinds, "no notification is shown twice");
  assert.deepEqual(first.notifications.map((n) => n.event).sort(), [...NotificationName].sort());
  for (const notification of first.notifications) {
    const sample = sampleOf.get(notification.event);
    assert.equal(notification.category, sample?.category, `${notification.event} is filed under its category`);
    assert.equal(notification.priority, sample?.priority, `${notification.event} is styled by its priority`);
  }
  await page.waitForFunction((n) => document.getElementById("send-status")?.textContent?.startsWith(`sent ${n}:`), kinds);
  await screenshot(page, "demo.png", t);

  assert.deepEqual(problems, [], "the page logged no errors");

  // herald dies: the page says it is reconnecting (the browser logs the failed attempts as errors).
  page.removeAllListeners("console");
  await server.kill();
  await until(page, "the page to notice the restart", (now) => now.state === "reconnecting");

  // The page may not reconnect before the events below are in: its token requests (one before each
  // reconnect) wait until then. So what it shows next, it can only have got by resuming.
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  await page.route("**/demo/token", async (route) => {
    await released;
    await route.continue();
  });
  await server.start();
  // Sent from the page itself, to the restarted herald, while the page is still reconnecting.
  await page.click("#send-all");
  await page.waitForFunction((n) => document.getElementById("send-status")?.dataset["sent"] === String(n), 2 * kinds);
  // Published, or parked until an event that names the batch's owner arrives; nothing refused.
  assert.match(await page.textContent("#send-status") ?? "", new RegExp(`^sent ${kinds}: \\d+ (published|parked)(, \\d+ (published|parked))?$`));
  assert.equal((await shown(page)).state, "reconnecting", "the page waited for its token");
  release(); // the route stays: once released, it lets every token request through

  const after = await until(
    page,
    `the page to reconnect and show the ${kinds} sent meanwhile`,
    (now) => now.state === "open" && now.notifications.length >= 2 * kinds,
  );
  assert.equal(after.notifications.length, 2 * kinds, "no notification is shown twice");
  const firstIds = new Set(first.notifications.map((n) => n.id));
  const meanwhile = after.notifications.filter((n) => !firstIds.has(n.id));
  assert.deepEqual(meanwhile.map((n) => n.event).sort(), [...NotificationName].sort());
  // The restarted herald never had the page's last id: it says so, and the page tells the reader.
  assert.match(after.notice, /no longer had notification/);
  await screenshot(page, "demo-after-restart.png", t);
  assert.deepEqual(problems, [], "the page threw no errors");
});
