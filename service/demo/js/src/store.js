/**
 * The Svelte store contract, without a Svelte dependency: a value that can be subscribed to, where
 * `subscribe(run)` calls `run` at once with the current value and again on every change, and returns
 * the function that unsubscribes. A Svelte component reads such a store as `$store`.
 *
 * @module
 */
/**
 * Makes a store holding `initial`. Subscribers that throw do not stop the others: their error goes
 * to `onError` (by default `console.error`).
 */
export function writable(initial, onError = reportError) {
    let value = initial;
    const runs = new Set();
    const call = (entry) => {
        try {
            entry.run(value);
        }
        catch (error) {
            onError(error);
        }
    };
    return {
        subscribe(run) {
            const entry = { run };
            runs.add(entry);
            call(entry);
            return () => {
                runs.delete(entry);
            };
        },
        set(next) {
            if (Object.is(next, value))
                return;
            value = next;
            for (const entry of [...runs]) {
                if (runs.has(entry))
                    call(entry);
            }
        },
        get() {
            return value;
        },
    };
}
/** Only the reading side of `store`, so that its subscribers cannot set it. */
export function readonly(store) {
    return { subscribe: (run) => store.subscribe(run) };
}
function reportError(error) {
    console.error("herald client: a subscriber threw:", error);
}
