// The client against a real herald in embedded mode. Run with `npm test` (builds, then node --test);
// needs the herald binary (see heraldBinary in ./herald.ts).

import assert from "node:assert/strict";
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import { after, test } from "node:test";
import {
  type ClassCreatedData,
  type ConnectionState,
  type HeraldClient,
  type Notification,
  connect,
  parseClose,
  tokenExpiry,
  writable,
} from "../src/index.js";
import { readServerFrame } from "../src/client.js";
import { Herald, INGEST_TOKEN, RepeatingProxy, countingWebSocket, productionArgs, token, until } from "./herald.js";

const running: Herald[] = [];
const clients: HeraldClient[] = [];

after(async () => {
  for (const client of clients) client.close();
  for (const herald of running) await herald.kill();
});

async function herald(extraArgs: string[] = []): Promise<Herald> {
  const started = await Herald.start(extraArgs);
  running.push(started);
  return started;
}

function track(client: HeraldClient): HeraldClient {
  clients.push(client);
  return client;
}

/** Fast timings for tests: reconnects within a fraction of a second. */
const FAST = { backoff: { initialMs: 50, maxMs: 400 }, connectTimeoutMs: 2_000 } as const;

test("a notification arrives typed, through on, onCategory, onAny and the notifications store", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const { WebSocket } = countingWebSocket();
  const client = track(connect({ url: server.ws, token: token(user), WebSocket, ...FAST }));
  const states: ConnectionState[] = [];
  client.connectionState.subscribe((state) => states.push(state));
  assert.deepEqual(states, ["connecting"], "subscribe calls run at once with the current state");

  const received: { data: ClassCreatedData; id: string; category: string; priority: string; timestamp: string }[] = [];
  client.on("class_created", (data, meta) => {
    // Compile-time: `data` is exactly ClassCreatedData, `meta` carries the notification's fields.
    const typed: ClassCreatedData = data;
    // @ts-expect-error user_id is not forwarded to browsers
    void data.user_id;
    received.push({ data: typed, id: meta.id, category: meta.category, priority: meta.priority, timestamp: meta.timestamp });
  });
  const ignored: unknown[] = [];
  const offOther = client.on("batch_file_added", (data) => ignored.push(data.filename));
  const inCategory: Notification[] = [];
  client.onCategory("class_management", (n) => inCategory.push(n));
  const otherCategory: Notification[] = [];
  client.onCategory("batch_progress", (n) => otherCategory.push(n));
  const any: Notification[] = [];
  const offAny = client.onAny((n) => any.push(n));
  let latest: readonly Notification[] = [];
  const offStore = client.notifications.subscribe((list) => (latest = list));

  await until("the client to open", () => client.state === "open");
  const classId = await server.classCreated(user);
  await until("the notification", () => received.length === 1);

  const [first] = received;
  assert.ok(first);
  assert.equal(first.data.class_id, classId);
  assert.deepEqual(first.data.course_codes, ["ENG5"]);
  assert.equal(first.category, "class_management");
  assert.equal(typeof first.id, "string");
  assert.ok(first.timestamp.length > 0);
  assert.equal(inCategory.length, 1);
  assert.equal(any.length, 1);
  assert.equal(any[0]?.event, "class_created");
  assert.deepEqual(ignored, []);
  assert.deepEqual(otherCategory, []);
  assert.equal(latest.length, 1);
  assert.equal(client.lastId, first.id);
  assert.deepEqual(states, ["connecting", "open"]);

  offAny();
  offOther();
  offStore();
  await server.classCreated(user);
  await until("the second notification", () => received.length === 2);
  assert.equal(any.length, 1, "an unsubscribed handler is not called");
  assert.equal(latest.length, 1, "an unsubscribed store run is not called");

  client.close();
  assert.equal(client.state, "closed");
});

test("the client reconnects after herald is killed and restarted, resumes with since, is told what was lost, and gets what is sent after", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const { WebSocket, urls } = countingWebSocket();
  const resyncs: { since: string; missed: number }[] = [];
  const client = track(
    connect({ url: server.ws, token: () => token(user), WebSocket, ...FAST, onResync: (info) => resyncs.push(info) }),
  );
  const states: ConnectionState[] = [];
  client.connectionState.subscribe((state) => states.push(state));
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));

  await until("the client to open", () => client.state === "open");
  const before = await server.classCreated(user);
  await until("the first notification", () => classes.length === 1);
  const lastId = client.lastId;
  assert.ok(lastId);

  await server.kill();
  await until("the client to notice", () => client.state === "reconnecting");
  await server.start();
  await until("the client to reopen", () => client.state === "open");
  // An embedded herald keeps its history in memory: after a restart it cannot prove nothing was
  // missed, and says so.
  await until("the resume to be answered", () => resyncs.length === 1);
  assert.deepEqual(resyncs, [{ since: lastId, missed: 0 }]);
  assert.equal(client.resumeSupported, true);

  const afterRestart = await server.classCreated(user);
  await until("the notification sent after the restart", () => classes.length === 2);
  assert.deepEqual(classes, [before, afterRestart]);
  assert.deepEqual(states.slice(0, 3), ["connecting", "open", "reconnecting"]);
  assert.equal(states.at(-1), "open");
  assert.ok(!states.includes("unauthorized"));

  const first = new URL(urls[0] ?? "");
  assert.equal(first.searchParams.get("since"), null, "the first connection has nothing to resume");
  const last = new URL(urls.at(-1) ?? "");
  assert.equal(last.searchParams.get("since"), lastId, "a reconnect resumes from the last processed id");
});

test("a client whose socket is closed while herald runs resumes with nothing missing, in order, once each", async () => {
  const adminToken = "client-test-admin-token";
  const server = await herald(["--admin-token", adminToken]);
  const user = `teacher-${randomUUID()}`;
  const { WebSocket, urls } = countingWebSocket();
  const resyncs: unknown[] = [];
  const client = track(
    connect({ url: server.ws, token: () => token(user), WebSocket, ...FAST, onResync: (info) => resyncs.push(info) }),
  );
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  await until("the client to open", () => client.state === "open");
  const sent = [await server.classCreated(user)];
  await until("the first notification", () => classes.length === 1);

  // An operator closes the user's sockets (4003); what is sent while the client reconnects comes
  // back through the resume.
  const response = await fetch(`${server.http}/admin/v1/users/${encodeURIComponent(user)}/disconnect`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}` },
  });
  assert.equal(response.status, 200);
  for (let index = 0; index < 5; index += 1) sent.push(await server.classCreated(user));
  await until("every notification", () => classes.length === sent.length);
  await until("a resumed connection", () => client.resumeSupported && client.state === "open");
  assert.deepEqual(classes, sent, "nothing missing, nothing twice, in order");
  assert.deepEqual(resyncs, [], "the resume recovered everything");
  assert.ok(urls.length >= 2);
  assert.ok(new URL(urls.at(-1) ?? "").searchParams.get("since"), "the reconnect resumed");
});

test("a client that processed nothing resumes from the position its socket started at", async () => {
  const adminToken = "client-test-admin-token";
  const server = await herald(["--admin-token", adminToken]);
  const user = `teacher-${randomUUID()}`;
  const { WebSocket, urls } = countingWebSocket();
  const resyncs: unknown[] = [];
  const client = track(
    connect({ url: server.ws, token: () => token(user), WebSocket, ...FAST, onResync: (info) => resyncs.push(info) }),
  );
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  await until("the position of the first socket", () => client.lastId !== undefined);
  const position = client.lastId ?? "";
  assert.match(position, /^0-[0-9]+$/, "a user with no history starts at an empty history's position");

  // Closed before anything reached it; what is sent meanwhile comes back through the resume.
  const response = await fetch(`${server.http}/admin/v1/users/${encodeURIComponent(user)}/disconnect`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}` },
  });
  assert.equal(response.status, 200);
  const sent: string[] = [];
  for (let index = 0; index < 3; index += 1) sent.push(await server.classCreated(user));
  await until("every notification", () => classes.length === sent.length);
  assert.deepEqual(classes, sent, "nothing missing, nothing twice, in order");
  assert.deepEqual(resyncs, [], "the resume recovered everything");
  assert.equal(new URL(urls[1] ?? "").searchParams.get("since"), position, "the reconnect resumed from the position");
});

test("a quota close (4000) backs off long: no retry storm, then connects once a slot is free", async () => {
  const server = await herald(["--max-connections-per-user", "1"]);
  const user = `teacher-${randomUUID()}`;
  const holder = track(connect({ url: server.ws, token: token(user), WebSocket: countingWebSocket().WebSocket, ...FAST }));
  await until("the first client to open", () => holder.state === "open");

  const { WebSocket, urls } = countingWebSocket();
  const client = track(
    connect({ url: server.ws, token: token(user), WebSocket, ...FAST, quotaBackoff: { initialMs: 3_000, maxMs: 3_000 } }),
  );
  await until("the quota close", () => client.lastClose?.code === 4000);
  assert.equal(client.lastClose?.errorCode, "QUOTA_EXCEEDED");
  assert.equal(client.state, "reconnecting");

  // Absence of retries can only be observed over a window: the fast backoff would have retried
  // several times within it; the quota backoff waits at least 1.5 s.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.equal(urls.length, 1, `one attempt within the quota backoff, not ${urls.length}`);

  holder.close();
  await until("the second client to get the freed slot", () => client.state === "open", 15_000);
  assert.equal(urls.length, 2);
});

test("a token refused with 1008 asks the token function once more; the same token stops as unauthorized", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const forged = token(user, 3600, "not-the-secret");
  let asked = 0;
  const { WebSocket, urls } = countingWebSocket();
  const errors: unknown[] = [];
  const client = track(
    connect({
      url: server.ws,
      token: async () => {
        asked += 1;
        return forged;
      },
      WebSocket,
      ...FAST,
      onError: (error) => errors.push(error),
    }),
  );
  await until("the client to give up", () => client.state === "unauthorized");
  assert.equal(client.lastClose?.code, 1008);
  assert.equal(urls.length, 1, "no second connection with the same refused token");
  assert.equal(asked, 2, "asked for the first token and once more after the 1008");
});

test("a token function that fails after a 1008 stops as unauthorized", async () => {
  const server = await herald();
  const forged = token("teacher-x", 3600, "not-the-secret");
  let asked = 0;
  const { WebSocket, urls } = countingWebSocket();
  const client = track(
    connect({
      url: server.ws,
      token: async () => {
        asked += 1;
        if (asked > 1) throw new Error("session expired");
        return forged;
      },
      WebSocket,
      ...FAST,
      onError: () => {},
    }),
  );
  await until("the client to give up", () => client.state === "unauthorized");
  assert.equal(urls.length, 1);
});

test("a 1008 followed by a new valid token reconnects at once and delivers", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const tokens = [token(user, 3600, "not-the-secret"), token(user)];
  const { WebSocket, urls } = countingWebSocket();
  const client = track(connect({ url: server.ws, token: async () => tokens.shift() ?? token(user), WebSocket, ...FAST }));
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  await until("the client to open with the new token", () => client.state === "open");
  assert.equal(client.lastClose?.code, 1008);
  assert.equal(urls.length, 2);
  const classId = await server.classCreated(user);
  await until("the notification", () => classes.length === 1);
  assert.deepEqual(classes, [classId]);
});

test("a token function is asked again ahead of the token's exp, and the new token is used", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const issued: string[] = [];
  const { WebSocket, urls } = countingWebSocket();
  const client = track(
    connect({
      url: server.ws,
      token: () => {
        const fresh = token(user, issued.length === 0 ? 2 : 3600);
        issued.push(fresh);
        return fresh;
      },
      WebSocket,
      ...FAST,
      refresh: "reconnect",
    }),
  );
  await until("the refresh ahead of expiry to reconnect", () => urls.length === 2 && client.state === "open", 10_000);
  assert.equal(new URL(urls[1] ?? "").searchParams.get("token"), issued[1]);
  assert.notEqual(issued[1], issued[0]);
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  const classId = await server.classCreated(user);
  await until("the notification", () => classes.length === 1);
  assert.deepEqual(classes, [classId]);
});

test("an in-band refresh ahead of exp keeps the socket open: herald takes the new token on the same socket", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  let asked = 0;
  const { WebSocket, urls } = countingWebSocket();
  const client = track(
    connect({
      url: server.ws,
      token: () => {
        asked += 1;
        return token(user, asked === 1 ? 2 : 3600);
      },
      WebSocket,
      ...FAST,
    }),
  );
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  await until("the refresh ahead of expiry", () => asked === 2, 10_000);
  const classId = await server.classCreated(user);
  await until("the notification on the same socket", () => classes.length === 1);
  assert.deepEqual(classes, [classId]);
  assert.equal(urls.length, 1, "the token went in band: no new socket");
  assert.equal(client.state, "open");
});

test("a notification repeated on the wire is delivered once", async () => {
  const server = await herald();
  const proxy = await RepeatingProxy.start(server.port);
  after(() => proxy.close());
  const user = `teacher-${randomUUID()}`;
  const { WebSocket } = countingWebSocket();
  const client = track(connect({ url: proxy.ws, token: token(user), WebSocket, ...FAST }));
  const ids: string[] = [];
  client.onAny((n) => ids.push(n.id));
  let stored: readonly Notification[] = [];
  client.notifications.subscribe((list) => (stored = list));
  await until("the client to open", () => client.state === "open");

  proxy.repeat = true;
  await server.classCreated(user);
  await server.classCreated(user);
  await until("both notifications", () => ids.length === 2);
  // The second notification's frames follow the first one's repeat on the same TCP stream.
  await until("the repeats to pass the proxy", () => proxy.repeated >= 2);
  assert.equal(new Set(ids).size, 2);
  assert.equal(ids.length, 2, "each id handled once");
  assert.equal(stored.length, 2);
});

test("the heartbeat notices a dead connection (herald stopped) and reconnects", async () => {
  const server = await herald();
  const user = `teacher-${randomUUID()}`;
  const { WebSocket, urls } = countingWebSocket();
  const client = track(
    connect({
      url: server.ws,
      token: token(user),
      WebSocket,
      ...FAST,
      connectTimeoutMs: 1_000,
      heartbeat: { intervalMs: 200, timeoutMs: 500 },
    }),
  );
  const classes: string[] = [];
  client.on("class_created", (data) => classes.push(data.class_id));
  await until("the client to open", () => client.state === "open");

  server.signal("SIGSTOP");
  try {
    await until("the heartbeat to declare the connection dead", () => client.state === "reconnecting", 5_000);
    assert.equal(client.lastClose?.reason, "no answer to heartbeat");
  } finally {
    server.signal("SIGCONT");
  }
  await until("the client to reopen", () => client.state === "open", 10_000);
  assert.ok(urls.length >= 2);
  const classId = await server.classCreated(user);
  await until("the notification after the stall", () => classes.length === 1);
  assert.deepEqual(classes, [classId]);
});

const production = productionArgs(`tsclient-${randomUUID()}`);

test(
  "production mode: notifications fan out through Redis from another instance, across a restart (SIGTERM, 1012) of the client's instance",
  { skip: production === undefined ? "set HERALD_TEST_KAFKA and HERALD_TEST_REDIS (scripts/test.sh does)" : false },
  async () => {
    const args = production ?? [];
    const near = await herald(args);
    const far = await herald(args);
    far.ingestHeaders = { authorization: `Bearer ${INGEST_TOKEN}` };
    const user = `teacher-${randomUUID()}`;
    const { WebSocket, urls } = countingWebSocket();
    const client = track(connect({ url: near.ws, token: () => token(user), WebSocket, ...FAST }));
    const classes: string[] = [];
    client.on("class_created", (data) => classes.push(data.class_id));
    const closes: number[] = [];
    client.connectionState.subscribe((state) => {
      if (state === "reconnecting" && client.lastClose) closes.push(client.lastClose.code);
    });
    await until("the client to open", () => client.state === "open");

    const before = await far.classCreated(user);
    await until("the notification from the other instance", () => classes.length === 1);

    await near.kill("SIGTERM");
    await until("the client to notice the shutdown", () => client.state === "reconnecting");
    assert.equal(closes[0], 1012, "the shutdown closes the socket with 1012 (SERVICE_RESTART)");
    await near.start();
    await until("the client to reopen", () => client.state === "open");
    const lastUrl = new URL(urls.at(-1) ?? "");
    assert.equal(lastUrl.searchParams.get("since"), client.lastId);

    const afterRestart = await far.classCreated(user);
    await until("the notification after the restart", () => classes.length === 2);
    assert.deepEqual(classes, [before, afterRestart]);
  },
);

test("tokenExpiry reads exp without verifying; parseClose reads herald's JSON reasons", () => {
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Math.abs((tokenExpiry(token("u", 60)) ?? 0) - (now + 60) * 1000) <= 1000);
  assert.equal(tokenExpiry("not a jwt"), undefined);
  assert.deepEqual(parseClose(4000, '{"error_code":"QUOTA_EXCEEDED","message":"Connection limit exceeded"}'), {
    code: 4000,
    reason: '{"error_code":"QUOTA_EXCEEDED","message":"Connection limit exceeded"}',
    errorCode: "QUOTA_EXCEEDED",
  });
  assert.equal(parseClose(1012, '{"error_code":"SERVICE_RESTART","retry_after_ms":1500}').retryAfterMs, 1500);
  assert.deepEqual(parseClose(1006, ""), { code: 1006, reason: "" });
});

test("writable follows the Svelte store contract", () => {
  const store = writable(1);
  const seen: number[] = [];
  const off = store.subscribe((value) => seen.push(value));
  store.set(2);
  store.set(2);
  off();
  store.set(3);
  assert.deepEqual(seen, [1, 2]);
});

test("readServerFrame reads position and resumed frames and known notifications, and nothing else", () => {
  const check = (text: string, expect: unknown): void => assert.deepEqual(readServerFrame(text), expect, text);
  check('{"type":"resumed","recovered":true,"missed":3}', { type: "resumed", recovered: true, missed: 3 });
  check('{"type":"resumed","recovered":false,"missed":0}', { type: "resumed", recovered: false, missed: 0 });
  check('{"type":"resumed"}', { type: "resumed", recovered: false, missed: 0 });
  check('{"type":"resumed","recovered":"yes","missed":-1}', { type: "resumed", recovered: false, missed: 0 });
  check('{"type":"position","since":"0-17"}', { type: "position", since: "0-17" });
  check('{"type":"position","since":17}', undefined);
  check('{"type":"pong"}', undefined);
  check('{"event":"class_created","data":[]}', undefined);
  check('{"event":"not_a_notification","data":{}}', undefined);
  check('{"event":"class_created"}', undefined);
  check("[]", undefined);
  check("null", undefined);
  check("{", undefined);
  check("", undefined);
  const known = '{"event":"class_created","data":{"class_id":"c"},"id":"1"}';
  assert.equal(readServerFrame(known)?.type, "notification");
});

test("the parsers of foreign bytes never throw on random input", () => {
  const alphabet = '{}[]":,.-_ 0123456789abcdefeventdataidtyperesumedrecoveredmissedtruefalsenull\\';
  for (let round = 0; round < 5_000; round += 1) {
    const length = randomInt(0, 64);
    const text =
      round % 2 === 0
        ? randomBytes(length).toString("latin1")
        : Array.from({ length }, () => alphabet[randomInt(0, alphabet.length)]).join("");
    readServerFrame(text);
    parseClose(randomInt(1000, 5000), text);
    tokenExpiry(text);
    tokenExpiry(`${Buffer.from(text).toString("base64url")}.${Buffer.from(text).toString("base64url")}.x`);
  }
});
