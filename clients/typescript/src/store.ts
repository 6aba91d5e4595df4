/**
 * The Svelte store contract, without a Svelte dependency: a value that can be subscribed to, where
 * `subscribe(run)` calls `run` at once with the current value and again on every change, and returns
 * the function that unsubscribes. A Svelte component reads such a store as `$store`.
 *
 * @module
 */

/** Stops a subscription or a handler; calling it again does nothing. */
export type Unsubscribe = () => void;

/** A readable store (the Svelte store contract). */
export interface Readable<T> {
  /** Calls `run` now with the current value, then on every change, until unsubscribed. */
  subscribe(run: (value: T) => void): Unsubscribe;
}

/** A readable store whose owner can set its value. */
export interface Writable<T> extends Readable<T> {
  /** Replaces the value and tells every subscriber, unless it is the same value (`Object.is`). */
  set(value: T): void;
  /** The current value, without subscribing. */
  get(): T;
}

/**
 * Makes a store holding `initial`. Subscribers that throw do not stop the others: their error goes
 * to `onError` (by default `console.error`).
 */
export function writable<T>(initial: T, onError: (error: unknown) => void = reportError): Writable<T> {
  let value = initial;
  const runs = new Set<{ run: (value: T) => void }>();
  const call = (entry: { run: (value: T) => void }): void => {
    try {
      entry.run(value);
    } catch (error) {
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
      if (Object.is(next, value)) return;
      value = next;
      for (const entry of [...runs]) {
        if (runs.has(entry)) call(entry);
      }
    },
    get() {
      return value;
    },
  };
}

/** Only the reading side of `store`, so that its subscribers cannot set it. */
export function readonly<T>(store: Readable<T>): Readable<T> {
  return { subscribe: (run) => store.subscribe(run) };
}

function reportError(error: unknown): void {
  console.error("herald client: a subscriber threw:", error);
}
