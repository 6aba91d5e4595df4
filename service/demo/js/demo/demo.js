/**
 * herald's demo page (served at `/demo` in embedded mode): the client from `../src` connected as the
 * development teacher, its notifications shown live by category, the connection state, and buttons
 * that send each event's sample through `POST /v1/events`.
 *
 * Compiled with the client by `npm run build:demo` into `service/demo/js/` (checked in, compiled into
 * the herald binary). Everything it loads comes from herald: `/demo/config.json` (the samples, made
 * from the event definitions) and `/demo/token` (a development token, asked for again before it
 * expires and on every reconnect).
 *
 * @module
 */
import { NotificationCategory, connect, } from "../src/index.js";
/** What the connection states mean to a person. */
const STATE_TEXT = {
    connecting: "connecting…",
    open: "live",
    reconnecting: "reconnecting…",
    unauthorized: "token refused",
    closed: "closed",
};
function element(tag, attributes = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes))
        node.setAttribute(name, value);
    if (text !== undefined)
        node.textContent = text;
    return node;
}
function byId(id) {
    const node = document.getElementById(id);
    if (node === null)
        throw new Error(`demo page: no element #${id}`);
    return node;
}
/** One line of the notification's data: its scalar fields, and the size of its lists and objects. */
function summary(data) {
    return Object.entries(data)
        .map(([key, value]) => {
        if (Array.isArray(value))
            return `${key}: [${value.length}]`;
        if (value !== null && typeof value === "object")
            return `${key}: {…}`;
        return `${key}: ${String(value)}`;
    })
        .join(" · ");
}
async function loadConfig() {
    const response = await fetch("/demo/config.json", { cache: "no-store" });
    if (!response.ok)
        throw new Error(`GET /demo/config.json: ${response.status} ${await response.text()}`);
    return (await response.json());
}
/** The token function: a fresh development token from herald, for every (re)connect and refresh. */
async function demoToken() {
    const response = await fetch("/demo/token", { cache: "no-store" });
    const body = (await response.json());
    if (!response.ok || typeof body.token !== "string") {
        throw new Error(`GET /demo/token: ${response.status} ${body.message ?? ""}`);
    }
    return body.token;
}
function main(config) {
    byId("user").textContent = config.user;
    const stateNode = byId("state");
    const lastIdNode = byId("last-id");
    const countNode = byId("count");
    const noticeNode = byId("notice");
    const sendStatus = byId("send-status");
    const board = byId("board");
    const ingestField = byId("ingest-token");
    byId("ingest").hidden = !config.ingest_token_required;
    // One section per category, in the generated order; lists newest first.
    const lists = new Map();
    const counts = new Map();
    for (const category of NotificationCategory) {
        const section = element("section", { class: "category", "data-category": category });
        const heading = element("h2", {}, category.replace(/_/g, " "));
        const badge = element("span", { class: "category-count" }, "0");
        heading.append(" ", badge);
        const list = element("ol", { class: "notifications" });
        section.append(heading, list);
        board.append(section);
        lists.set(category, list);
        counts.set(category, badge);
    }
    let total = 0;
    const client = connect({
        url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
        token: demoToken,
        backoff: { initialMs: 250, maxMs: 2_000 },
        keep: 0,
        onError: (error) => console.warn("herald demo:", error),
    });
    client.connectionState.subscribe((state) => {
        stateNode.dataset["state"] = state;
        stateNode.textContent = STATE_TEXT[state];
        if (state === "open" && client.lastClose !== undefined) {
            const since = client.lastId === undefined ? "" : `, resuming after ${client.lastId}`;
            noticeNode.textContent = `Reconnected after close ${client.lastClose.code}${since}.`;
        }
    });
    client.onResync(({ since, missed }) => {
        noticeNode.textContent =
            `herald no longer had notification ${since} (restarted without its history?): it sent the ${missed} it had; ` +
                "a real application would reload its state from its APIs here.";
    });
    client.onAny((notification) => {
        const list = lists.get(notification.category);
        if (list === undefined)
            return;
        const item = element("li", {
            class: `notification priority-${notification.priority}`,
            "data-id": notification.id,
            "data-event": notification.event,
        });
        const title = element("div", { class: "title" });
        title.append(element("span", { class: "event" }, notification.event), element("span", { class: "priority" }, notification.priority), element("time", { datetime: notification.timestamp }, new Date(notification.timestamp).toLocaleTimeString()));
        item.append(title, element("div", { class: "data" }, summary(notification.data)));
        list.prepend(item);
        total += 1;
        const badge = counts.get(notification.category);
        if (badge !== undefined)
            badge.textContent = String(list.childElementCount);
        countNode.textContent = String(total);
        lastIdNode.textContent = client.lastId ?? "";
    });
    /** Posts `samples` one after the other; reports what herald did with them. */
    async function send(samples) {
        const outcomes = new Map();
        const headers = { "content-type": "application/json" };
        if (config.ingest_token_required)
            headers["authorization"] = `Bearer ${ingestField.value.trim()}`;
        sendStatus.textContent = `sending ${samples.length}…`;
        for (const sample of samples) {
            // A new event id and time, as a producer's next publish would have; the payload stays the
            // example's, so herald drops a repeat within the event's dedupe window.
            const envelope = { ...sample.envelope, event_id: crypto.randomUUID(), event_timestamp: new Date().toISOString() };
            let outcome;
            try {
                const response = await fetch("/v1/events", { method: "POST", headers, body: JSON.stringify(envelope) });
                const body = (await response.json());
                outcome = response.ok ? (body.delivery ?? "accepted") : `${response.status} ${body.error ?? "error"}`;
            }
            catch (error) {
                outcome = `not sent (${String(error)})`;
            }
            outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
        sendStatus.textContent = `sent ${samples.length}: ${[...outcomes].map(([outcome, n]) => `${n} ${outcome}`).join(", ")}`;
        sendStatus.dataset["sent"] = String(Number(sendStatus.dataset["sent"] ?? "0") + samples.length);
    }
    const sendAll = byId("send-all");
    sendAll.textContent = `Send one event of each kind (${config.samples.length})`;
    sendAll.addEventListener("click", () => void send(config.samples));
    const kinds = byId("kinds");
    for (const sample of config.samples) {
        const button = element("button", { type: "button", class: `kind priority-${sample.priority}`, "data-event": sample.notification }, sample.notification);
        button.addEventListener("click", () => void send([sample]));
        kinds.append(button);
    }
    document.body.dataset["ready"] = "true";
}
loadConfig().then(main, (error) => {
    const notice = document.getElementById("notice");
    if (notice !== null)
        notice.textContent = `The demo page could not start: ${String(error)}`;
});
