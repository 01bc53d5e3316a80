/**
 * Request validation for NATS commands: each command declares its fields,
 * and a request is checked against them before anything runs. Pure code,
 * no I/O. Unknown fields are rejected so a typo never silently does
 * something else.
 */

export type FieldType = "string" | "integer" | "boolean" | "string[]" | "object";

export interface FieldSpec {
  type: FieldType;
  required?: boolean;
  /** Longest string (or each string of a list); default 1000. */
  maxLength?: number;
  /** Most list entries; default 1000. */
  maxItems?: number;
  min?: number;
  max?: number;
  description?: string;
}

export type RequestSchema = Record<string, FieldSpec>;

export type Validated = { ok: true; value: Record<string, unknown> } | { ok: false; message: string };

const DEFAULT_MAX_LENGTH = 1000;
const DEFAULT_MAX_ITEMS = 1000;

function checkString(name: string, v: unknown, spec: FieldSpec): string | undefined {
  if (typeof v !== "string") return `${name} must be a string`;
  if (v.length > (spec.maxLength ?? DEFAULT_MAX_LENGTH)) return `${name} is longer than ${spec.maxLength ?? DEFAULT_MAX_LENGTH} characters`;
  if (v.includes("\u0000")) return `${name} contains a NUL character`;
  return undefined;
}

function checkField(name: string, v: unknown, spec: FieldSpec): string | undefined {
  switch (spec.type) {
    case "string":
      return checkString(name, v, spec);
    case "integer":
      if (typeof v !== "number" || !Number.isSafeInteger(v)) return `${name} must be an integer`;
      if (spec.min !== undefined && v < spec.min) return `${name} must be at least ${spec.min}`;
      if (spec.max !== undefined && v > spec.max) return `${name} must be at most ${spec.max}`;
      return undefined;
    case "boolean":
      return typeof v === "boolean" ? undefined : `${name} must be true or false`;
    case "string[]": {
      if (!Array.isArray(v)) return `${name} must be a list of strings`;
      if (v.length > (spec.maxItems ?? DEFAULT_MAX_ITEMS)) return `${name} has more than ${spec.maxItems ?? DEFAULT_MAX_ITEMS} entries`;
      for (const [i, item] of v.entries()) {
        const problem = checkString(`${name}[${i}]`, item, spec);
        if (problem) return problem;
      }
      return undefined;
    }
    case "object":
      return typeof v === "object" && v !== null && !Array.isArray(v) ? undefined : `${name} must be an object`;
  }
}

export function validateRequest(schema: RequestSchema, payload: unknown): Validated {
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
    return { ok: false, message: "request must be a JSON object" };
  }
  const input = payload as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    // Own keys only: `in` would let "__proto__", "constructor", "toString" ... through as known.
    if (!Object.hasOwn(schema, key)) return { ok: false, message: `unknown field ${JSON.stringify(key.slice(0, 100))}` };
  }
  const value: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const v = input[name];
    if (v === undefined || v === null) {
      if (spec.required) return { ok: false, message: `${name} is required` };
      continue;
    }
    const problem = checkField(name, v, spec);
    if (problem) return { ok: false, message: problem };
    value[name] = v;
  }
  return { ok: true, value };
}

/** Parses a request body: empty means {}, anything else must be JSON. */
export function parseRequestBody(body: string): { ok: true; value: unknown } | { ok: false; message: string } {
  if (body.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(body) };
  } catch {
    return { ok: false, message: "request is not valid JSON" };
  }
}
