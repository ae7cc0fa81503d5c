// Checking edited arguments against a tool's JSON Schema before they are sent.
// Covers what pydantic writes for tool arguments: type, enum, const, required, properties,
// additionalProperties, string lengths, number bounds, items, anyOf/oneOf/allOf and local $refs.

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function typeMatches(expected, value) {
  const actual = typeOf(value);
  if (expected === "number") return actual === "number" || actual === "integer";
  return expected === actual;
}

function resolve(schema, root) {
  let current = schema;
  for (let depth = 0; current && current.$ref && depth < 20; depth++) {
    const ref = current.$ref;
    if (!ref.startsWith("#/")) return {};
    current = ref
      .slice(2)
      .split("/")
      .reduce((node, part) => (node ? node[part.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), root);
  }
  return current || {};
}

function check(schema, value, path, root, errors) {
  schema = resolve(schema, root);
  const where = path || "arguments";
  if (schema.anyOf || schema.oneOf) {
    const options = schema.anyOf || schema.oneOf;
    const fits = options.some((option) => {
      const found = [];
      check(option, value, path, root, found);
      return found.length === 0;
    });
    if (!fits) {
      errors.push(`${where}: does not match any allowed form (${options.map((o) => resolve(o, root).type || "object").join(" or ")})`);
    }
    return;
  }
  for (const part of schema.allOf || []) check(part, value, path, root, errors);
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) {
      errors.push(`${where}: must be ${types.join(" or ")}, not ${typeOf(value)}`);
      return;
    }
  }
  if (schema.enum && !schema.enum.some((item) => JSON.stringify(item) === JSON.stringify(value))) {
    errors.push(`${where}: must be one of ${schema.enum.map((item) => JSON.stringify(item)).join(", ")}`);
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    errors.push(`${where}: must be ${JSON.stringify(schema.const)}`);
  }
  const kind = typeOf(value);
  if (kind === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) {
      errors.push(`${where}: needs at least ${schema.minLength} characters`);
    }
    if (schema.maxLength !== undefined && value.length > schema.maxLength) {
      errors.push(`${where}: at most ${schema.maxLength} characters`);
    }
    if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) {
      errors.push(`${where}: must match ${schema.pattern}`);
    }
  }
  if (kind === "number" || kind === "integer") {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${where}: must be ≥ ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${where}: must be ≤ ${schema.maximum}`);
  }
  if (kind === "array" && schema.items) {
    value.forEach((item, index) => check(schema.items, item, `${where}[${index}]`, root, errors));
  }
  if (kind === "object") {
    const properties = schema.properties || {};
    for (const name of schema.required || []) {
      if (!(name in value)) errors.push(`${where}: missing required field "${name}"`);
    }
    for (const [name, item] of Object.entries(value)) {
      const inner = path ? `${path}.${name}` : name;
      if (name in properties) check(properties[name], item, inner, root, errors);
      else if (schema.additionalProperties === false) errors.push(`${where}: unknown field "${name}"`);
      else if (typeof schema.additionalProperties === "object") check(schema.additionalProperties, item, inner, root, errors);
    }
  }
}

/** Problems of `value` against `schema` (a list of sentences; empty when it fits). */
export function validate(schema, value) {
  const errors = [];
  if (!schema || typeof schema !== "object") return errors;
  check(schema, value, "", schema, errors);
  return errors;
}

/** Parse the editor's text: {value} or {error: "where the JSON is broken"}. */
export function parseJson(text) {
  try {
    return { value: JSON.parse(text) };
  } catch (err) {
    return { error: `Not valid JSON: ${err.message}` };
  }
}
