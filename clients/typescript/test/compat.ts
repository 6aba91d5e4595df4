// Compile-time checks (tsc via `npm run check`, nothing to run): the constructors a frontend passes
// to `connect` fit `WebSocketConstructor`.

import type { WebSocketConstructor } from "../src/index.js";
import type NodeWebSocket from "ws";

declare const browser: typeof globalThis.WebSocket;
declare const nodeWs: typeof NodeWebSocket;

export const fromBrowser: WebSocketConstructor = browser;
export const fromWs: WebSocketConstructor = nodeWs;
