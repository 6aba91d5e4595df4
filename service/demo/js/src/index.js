/**
 * `@herald/client`: the types of herald's browser notifications, plus two tiny helpers for reading
 * them off a WebSocket. Dependency-free; works in any browser or bundler.
 *
 * Every type and constant in `./events.ts` is re-exported: that file is generated from the JSON
 * Schemas in `event-defs/` (see README.md), so it is never edited by hand.
 *
 * @module
 */
import { NotificationName } from "./events.js";
export * from "./events.js";
const NAMES = new Set(NotificationName);
/** True for a plain JSON object: not null, not an array. */
function isJsonObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/**
 * Parses one WebSocket text frame from herald.
 *
 * Returns the notification when `text` is JSON for an object whose `event` is one of
 * {@link NotificationName} and whose `data` is an object; returns `null` for anything else
 * (invalid JSON, another message shape, or a notification name these types do not know yet, e.g.
 * one added on the server after this package was built). It never throws.
 *
 * Only `event` and the presence of an object `data` are checked at run time: the fields inside
 * `data` and the notification metadata (`id`, `category`, `timestamp`, ...) are trusted to match
 * the generated types, which herald guarantees for the notifications it sends.
 *
 * @example
 * socket.addEventListener("message", (e) => {
 *   const n = typeof e.data === "string" ? parseNotification(e.data) : null;
 *   if (n?.event === "batch_file_added") console.log(n.data.filename);
 * });
 */
export function parseNotification(text) {
    let value;
    try {
        value = JSON.parse(text);
    }
    catch {
        return null;
    }
    if (!isJsonObject(value))
        return null;
    const { event, data } = value;
    if (typeof event !== "string" || !NAMES.has(event) || !isJsonObject(data))
        return null;
    return value;
}
/**
 * Narrows a notification to the one named `name`; the same as `n.event === name`, usable where a
 * predicate function is needed (e.g. `list.filter((n) => isNotification(n, "class_created"))`).
 *
 * @example
 * if (isNotification(n, "student_created")) console.log(n.data.student_email ?? "(no email)");
 */
export function isNotification(n, name) {
    return n.event === name;
}
export { connect, parseClose, readServerFrame, tokenExpiry } from "./client.js";
export { readonly, writable } from "./store.js";
