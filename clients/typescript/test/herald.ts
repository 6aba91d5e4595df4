// Test support: a real herald in embedded mode, tokens signed here, events posted over HTTP, and a
// TCP proxy that can repeat the server's frames. Compiled with tsconfig.test.json, run by node --test.

import { type ChildProcess, spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import type { WebSocketConstructor } from "../src/index.js";

export const SECRET = "herald-client-test-secret";

/** The repository root: this file runs from clients/typescript/build/test/. */
const ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

/** The herald binary: $HERALD_BIN, else $CARGO_TARGET_DIR/debug/herald, else target/debug/herald. */
export function heraldBinary(): string {
  const candidates = [
    process.env["HERALD_BIN"],
    process.env["CARGO_TARGET_DIR"] && `${process.env["CARGO_TARGET_DIR"]}/debug/herald`,
    `${ROOT}target/debug/herald`,
  ];
  for (const candidate of candidates) {
    if (candidate && existsSync(candidate)) return candidate;
  }
  throw new Error(
    `herald binary not found (looked at ${candidates.filter(Boolean).join(", ")}): run \`cargo build -p herald-service\` from ${ROOT}, or set HERALD_BIN`,
  );
}

/** Waits until `condition()` holds, polling; fails with `what` after `timeoutMs`. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A free TCP port on 127.0.0.1 (free when asked; herald binds it right after). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** One herald process in embedded mode on a fixed port (so it can be restarted on the same one). */
export class Herald {
  process: ChildProcess | undefined;
  output = "";

  constructor(
    readonly port: number,
    readonly extraArgs: string[] = [],
  ) {}

  static async start(extraArgs: string[] = []): Promise<Herald> {
    const herald = new Herald(await freePort(), extraArgs);
    await herald.start();
    return herald;
  }

  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<void> {
    const args = ["--listen", `127.0.0.1:${this.port}`, "--jwt-secret", SECRET, "--log-format", "text", ...this.extraArgs];
    const child = spawn(heraldBinary(), args, { stdio: ["ignore", "pipe", "pipe"] });
    this.process = child;
    child.stdout?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    let exited = false;
    child.on("exit", () => (exited = true));
    await until(`herald on port ${this.port} to be ready`, async () => {
      if (exited) throw new Error(`herald exited while starting:\n${this.output}`);
      try {
        return (await fetch(`${this.http}/readyz`)).ok;
      } catch {
        return false;
      }
    });
  }

  /** Stops the process (by default SIGKILL: no goodbye to the sockets) and waits for it to exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGCONT");
    child.kill(signal);
    await exited;
  }

  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }

  /** Headers for POST /v1/events (the ingest token, when the instance needs one). */
  ingestHeaders: Record<string, string> = {};

  /** Posts a class_created event for `user` with a fresh class id; returns the class id. */
  async classCreated(user: string, classId = `class-${randomUUID()}`): Promise<string> {
    const envelope = {
      event_id: randomUUID(),
      event_type: "huleedu.class.created.v1",
      event_timestamp: new Date().toISOString(),
      source_service: "class-management-service",
      schema_version: 1,
      correlation_id: randomUUID(),
      data_schema_uri: null,
      data: { class_id: classId, class_designation: "9A English", course_codes: ["ENG5"], user_id: user },
      metadata: null,
    };
    const response = await fetch(`${this.http}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", ...this.ingestHeaders },
      body: JSON.stringify(envelope),
    });
    if (!response.ok) throw new Error(`POST /v1/events: ${response.status} ${await response.text()}`);
    return classId;
  }
}

/** An HS256 JWT for `sub`, valid for `seconds`, signed with `secret`. */
export function token(sub: string, seconds = 3600, secret = SECRET): string {
  const encode = (value: object): string => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub, iat: now, exp: now + seconds, jti: randomUUID() })}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** The `ws` package's WebSocket, counting the connections opened through it and their URLs. */
export function countingWebSocket(): { WebSocket: WebSocketConstructor; urls: string[] } {
  const urls: string[] = [];
  class Counting extends WebSocket {
    constructor(url: string) {
      urls.push(url);
      super(url);
    }
  }
  return { WebSocket: Counting as unknown as WebSocketConstructor, urls };
}

/**
 * A TCP proxy in front of herald that, when `repeat` is on, forwards every text frame the server
 * sends twice: a network path that delivers a notification again.
 */
export class RepeatingProxy {
  repeat = false;
  repeated = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(
    server: Server,
    readonly port: number,
  ) {
    this.#server = server;
  }

  static async start(target: number): Promise<RepeatingProxy> {
    let proxy: RepeatingProxy | undefined;
    const server = createServer((client) => proxy?.handle(client, target));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    proxy = new RepeatingProxy(server, address.port);
    return proxy;
  }

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  handle(client: Socket, target: number): void {
    const upstream = tcpConnect(target, "127.0.0.1");
    this.#sockets.add(client).add(upstream);
    client.pipe(upstream);
    let buffer = Buffer.alloc(0);
    let handshakeDone = false;
    upstream.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!handshakeDone) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        client.write(buffer.subarray(0, end + 4));
        buffer = buffer.subarray(end + 4);
        handshakeDone = true;
      }
      // Server frames are unmasked: FIN/opcode byte, length byte (126: 16-bit, 127: 64-bit).
      for (;;) {
        if (buffer.length < 2) return;
        const opcode = (buffer[0] ?? 0) & 0x0f;
        let length = (buffer[1] ?? 0) & 0x7f;
        let header = 2;
        if (length === 126) {
          if (buffer.length < 4) return;
          length = buffer.readUInt16BE(2);
          header = 4;
        } else if (length === 127) {
          if (buffer.length < 10) return;
          length = Number(buffer.readBigUInt64BE(2));
          header = 10;
        }
        if (buffer.length < header + length) return;
        const frame = buffer.subarray(0, header + length);
        buffer = buffer.subarray(header + length);
        client.write(frame);
        if (this.repeat && opcode === 1) {
          client.write(frame);
          this.repeated += 1;
        }
      }
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

/** The notification names, for the production flags' `--topic` pairs. */
const NAMES = [
  "batch_content_provisioning_completed",
  "batch_essays_ready",
  "batch_file_added",
  "batch_file_removed",
  "batch_phase_outcome",
  "batch_validation_errors",
  "cj_assessment_completed",
  "class_created",
  "essay_content_provisioned",
  "essay_student_association_updated",
  "essay_validation_failed",
  "spellcheck_completed",
  "student_created",
];

export const INGEST_TOKEN = "herald-client-test-ingest";

/**
 * Flags for a production-mode herald on the shared test Kafka and Redis ($HERALD_TEST_KAFKA,
 * $HERALD_TEST_REDIS), isolated by a scope of its own: topics, group and Redis key prefix. Events
 * arrive over POST /v1/events (with the ingest token) and fan out through Redis; the scope's topics
 * need not exist. `undefined` when the variables are not set.
 */
export function productionArgs(scope: string): string[] | undefined {
  const kafka = process.env["HERALD_TEST_KAFKA"];
  const redis = process.env["HERALD_TEST_REDIS"];
  if (!kafka || !redis) return undefined;
  const args = [
    "--kafka-brokers", kafka,
    "--redis-url", redis,
    "--kafka-group", `test.${scope}`,
    "--redis-prefix", `test:${scope}:`,
    "--dead-letter-topic", `test.${scope}.dead-letter`,
    "--allow-unscoped-tokens",
    "--http-ingest",
    "--ingest-token", INGEST_TOKEN,
  ];
  for (const name of NAMES) args.push("--topic", `${name}=test.${scope}.${name}`);
  return args;
}
