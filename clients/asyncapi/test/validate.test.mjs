// Parses the checked-in AsyncAPI document with the AsyncAPI project's own parser and fails on any
// diagnostic of error severity. Warnings and hints are printed, so a reader sees them, but pass.
//
// Run: (cd clients/asyncapi && npm test), after `bash scripts/setup-typescript.sh` installed the
// parser. `cargo test -p herald --test tests asyncapi` runs this too.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";

import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const documentUrl = new URL("../asyncapi.json", import.meta.url);
const text = await readFile(documentUrl, "utf8");
const { document, diagnostics } = await new Parser().parse(text, { source: documentUrl.pathname });

function describe(diagnostic) {
  const where = diagnostic.path.length === 0 ? "/" : "/" + diagnostic.path.join("/");
  return `${DiagnosticSeverity[diagnostic.severity]} ${diagnostic.code} at ${where}: ${diagnostic.message}`;
}

test("the AsyncAPI document parses without errors", () => {
  for (const diagnostic of diagnostics) {
    if (diagnostic.severity !== DiagnosticSeverity.Error) {
      console.log(describe(diagnostic));
    }
  }
  const errors = diagnostics.filter((diagnostic) => diagnostic.severity === DiagnosticSeverity.Error);
  assert.deepEqual(errors.map(describe), [], "the AsyncAPI parser reports errors in asyncapi.json");
  assert.ok(document, "the parser returned a document");
  assert.equal(document.version(), "3.0.0");
});

test("the notification of every Kafka event and every frame is a message of the WebSocket channel", () => {
  assert.ok(document);
  const ws = document.channels().all().find((channel) => channel.address() === "/ws");
  assert.ok(ws, "a channel with address /ws");
  const wsMessages = new Set(ws.messages().all().map((message) => message.id()));
  const kafkaMessages = document
    .channels()
    .all()
    .filter((channel) => channel.address() !== "/ws")
    .flatMap((channel) => channel.messages().all());
  assert.ok(kafkaMessages.length > 0, "the Kafka channels carry events");
  for (const message of kafkaMessages) {
    const notification = message.extensions().get("x-herald-notification")?.value();
    assert.ok(wsMessages.has(notification), `/ws carries ${notification}, the notification of ${message.id()}`);
  }
  for (const frame of ["clientPing", "clientResume", "clientAuth", "serverPong", "serverResumed", "serverAuth"]) {
    assert.ok(wsMessages.has(frame), `/ws carries the frame ${frame}`);
  }
});
