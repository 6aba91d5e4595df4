/**
 * Compile-time checks of the generated types (no runtime, no test framework): `npm run check`
 * fails if any of them stops holding. They pin the schema -> TypeScript mapping rules of
 * docs/event-definitions.md on real events, and the helpers of src/index.ts.
 *
 * A `// @ts-expect-error` line is a check that something must NOT compile: tsc reports an unused
 * directive as an error, so if the line starts compiling, the check fails.
 */

import { CourseCode, NotificationName, isNotification, parseNotification } from "../src/index.js";
import type {
  BatchEssaysReady,
  BatchFileAddedData,
  BatchFileAddedNotification,
  BatchFileAddedV1,
  BatchContentProvisioningCompletedV1,
  ClassCreatedV1,
  Notification,
  NotificationOf,
  Open,
  StudentCreatedData,
  StudentCreatedV1,
} from "../src/index.js";

// ---------------------------------------------------------------------------------------------
// Type-level assertion helpers.

/** True when A and B are the same type (not merely mutually assignable). */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Only `true` is assignable to `Expect<true>`, so `const _: Expect<X> = true` fails unless X is true. */
type Expect<T extends true> = T;
type Not<T extends boolean> = T extends true ? false : true;
/** True when key K of T may be absent (`k?:`). */
type IsOptional<T, K extends keyof T> = {} extends Pick<T, K> ? true : false;
/** The type of key K once present: strips only the `undefined` an optional key adds. */
type Present<T, K extends keyof T> = Exclude<T[K], undefined>;

// ---------------------------------------------------------------------------------------------
// Required, not nullable: `k: T`.

export const requiredPlain: [
  Expect<Not<IsOptional<BatchFileAddedV1, "filename">>>,
  Expect<Equals<BatchFileAddedV1["filename"], string>>,
] = [true, true];

// Required, nullable: `k: T | null` (always present, may be null).
export const requiredNullable: [
  Expect<Not<IsOptional<StudentCreatedV1, "student_email">>>,
  Expect<Equals<StudentCreatedV1["student_email"], string | null>>,
] = [true, true];

// Not required, not nullable: `k?: T` (may be absent, never null).
export const optionalPlain: [
  Expect<IsOptional<BatchFileAddedV1, "correlation_id">>,
  Expect<Equals<Present<BatchFileAddedV1, "correlation_id">, string>>,
] = [true, true];

// Not required, nullable: `k?: T | null` (may be absent or null).
export const optionalNullable: [
  Expect<IsOptional<BatchEssaysReady, "teacher_first_name">>,
  Expect<Equals<Present<BatchEssaysReady, "teacher_first_name">, string | null>>,
] = [true, true];

const fileAdded: BatchFileAddedV1 = {
  batch_id: "b1",
  file_upload_id: "f1",
  filename: "essay.docx",
  user_id: "u1",
};
const student: StudentCreatedV1 = {
  student_id: "s1",
  first_name: "Ada",
  last_name: "Lovelace",
  student_email: null,
  class_ids: [],
  created_by_user_id: "u1",
};

// @ts-expect-error a required key (filename) cannot be left out
export const missingRequired: BatchFileAddedV1 = { batch_id: "b1", file_upload_id: "f1", user_id: "u1" };
const { student_email: _email, ...studentWithoutEmail } = student;
// @ts-expect-error a required-nullable key (student_email) must be present, even if null
export const missingRequiredNullable: StudentCreatedV1 = studentWithoutEmail;
// @ts-expect-error ... and present means a string or null, not undefined
export const undefinedForRequiredNullable: StudentCreatedV1 = { ...student, student_email: undefined };
// @ts-expect-error null is not a value of a non-nullable key
export const nullForRequired: BatchFileAddedV1 = { ...fileAdded, filename: null };
// @ts-expect-error null is not a value of an optional, non-nullable key
export const nullForOptional: BatchFileAddedV1 = { ...fileAdded, correlation_id: null };
// @ts-expect-error with exactOptionalPropertyTypes, "absent" is not "present and undefined"
export const undefinedForOptional: BatchFileAddedV1 = { ...fileAdded, correlation_id: undefined };
// Omitting an optional key or nulling an optional-nullable one is fine.
export const optionalNull: Pick<BatchEssaysReady, "teacher_first_name"> = { teacher_first_name: null };
export const optionalAbsent: Pick<BatchEssaysReady, "teacher_first_name"> = {};

// ---------------------------------------------------------------------------------------------
// Enums are open: `Open<T>` accepts values added after generation, keeps the known ones.

export const enumIsOpen: [
  Expect<Equals<BatchContentProvisioningCompletedV1["course_code"], Open<CourseCode>>>,
  Expect<Equals<ClassCreatedV1["course_codes"], Open<CourseCode>[]>>,
  // Not widened to plain `string` (which would lose autocompletion of the known values) ...
  Expect<Not<Equals<Open<CourseCode>, string>>>,
  // ... and every known value is still a member of the union.
  Expect<Equals<Extract<Open<CourseCode>, CourseCode>, CourseCode>>,
] = [true, true, true, true];

export const knownCode: BatchContentProvisioningCompletedV1["course_code"] = "ENG5";
export const unknownCode: BatchContentProvisioningCompletedV1["course_code"] = "ENG8";
export const codes: ClassCreatedV1["course_codes"] = ["ENG5", "ENG8"];

// ---------------------------------------------------------------------------------------------
// Notifications.

export const notificationData: [
  Expect<Equals<NotificationOf<"batch_file_added">["data"]["filename"], string>>,
  Expect<Not<IsOptional<NotificationOf<"batch_file_added">["data"], "filename">>>,
  Expect<Equals<keyof BatchFileAddedData, "batch_id" | "file_upload_id" | "filename" | "timestamp">>,
  // The data keeps each field's optionality and nullability from the event.
  Expect<IsOptional<BatchFileAddedData, "timestamp">>,
  Expect<Equals<StudentCreatedData["student_email"], string | null>>,
  Expect<Equals<NotificationOf<"batch_file_added">, BatchFileAddedNotification>>,
] = [true, true, true, true, true, true];

// Every name in the generated list has a notification type and every notification type is listed:
// checked against the generated union, so adding an event needs no edit here.
export const notificationNames: [
  Expect<Equals<(typeof NotificationName)[number], NotificationName>>,
  Expect<Equals<Notification["event"], NotificationName>>,
  Expect<Equals<NotificationOf<NotificationName>, Notification>>,
] = [true, true, true];

// Enum values are written once: the type is derived from the array of known values.
export const enumValues: [
  Expect<Equals<(typeof CourseCode)[number], CourseCode>>,
  Expect<Equals<Extract<CourseCode, "ENG5">, "ENG5">>,
] = [true, true];

const added: BatchFileAddedNotification = {
  event: "batch_file_added",
  data: { batch_id: "b1", file_upload_id: "f1", filename: "essay.docx" },
  id: "n1",
  event_id: "e1",
  category: "file_operations",
  priority: "immediate",
  timestamp: "2025-01-01T00:00:00Z",
  correlation_id: "c1",
};

// @ts-expect-error each notification has exactly one category
export const wrongCategory: BatchFileAddedNotification = { ...added, category: "batch_progress" };
// @ts-expect-error each notification has exactly one priority
export const wrongPriority: BatchFileAddedNotification = { ...added, priority: "low" };
// @ts-expect-error the event name and the data belong together
export const wrongEvent: Notification = { ...added, event: "class_created" };
// @ts-expect-error data must carry the forwarded required fields
export const missingDataField: BatchFileAddedNotification = { ...added, data: { batch_id: "b1", file_upload_id: "f1" } };
// @ts-expect-error a notification name that does not exist
export type NoSuchNotification = NotificationOf<"batch_file_added_v2">;

/**
 * `event` discriminates the union: each case sees its own data, and what the cases leave over is
 * exactly the other names of the generated list (so the check holds however many events there are).
 */
export function describe(n: Notification): string {
  switch (n.event) {
    case "batch_file_added":
      return n.data.filename;
    case "class_created":
      return n.data.class_designation;
    case "student_created":
      return n.data.student_email ?? `${n.data.first_name} ${n.data.last_name}`;
    default: {
      const rest: Expect<Equals<typeof n.event, Exclude<NotificationName, "batch_file_added" | "class_created" | "student_created">>> = true;
      return rest ? n.event : "";
    }
  }
}

/** A handler per notification name: a missing one does not compile, whatever the list holds. */
export type Handlers = { [N in NotificationName]: (n: NotificationOf<N>) => string };
export function dispatch(n: Notification, handlers: Handlers): string {
  return (handlers[n.event] as (n: Notification) => string)(n);
}
// @ts-expect-error every notification name needs a handler
export const incomplete: Handlers = { batch_file_added: (n) => n.data.filename };

export function wrongField(n: Notification): string {
  if (n.event === "class_created") {
    // @ts-expect-error a class_created notification has no filename
    return n.data.filename;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Helpers of src/index.ts.

export const helperTypes: [
  Expect<Equals<ReturnType<typeof parseNotification>, Notification | null>>,
  Expect<Equals<Parameters<typeof parseNotification>, [text: string]>>,
] = [true, true];

export function useHelpers(text: string): string | undefined {
  const n = parseNotification(text);
  if (n === null) return undefined;
  if (isNotification(n, "batch_file_added")) {
    const narrowed: Expect<Equals<typeof n, BatchFileAddedNotification>> = true;
    return narrowed ? n.data.filename : undefined;
  }
  // @ts-expect-error isNotification only accepts known names
  isNotification(n, "no_such_event");
  return undefined;
}
