// Validates Kubernetes objects against the API schemas, without a cluster.
//
//   node validate.mjs < objects.json      (a JSON array of objects)
//
// Prints one JSON line {"results": [...]} with, per object, its kind and name
// and "errors" (empty when valid) or "skipped" (no schema for its apiVersion
// and kind). Exit status 0 when it ran, whatever it found; 2 on bad input.
//
// Two checks per object:
//  1. The schema: kubernetes-models (5.x, the OpenAPI schemas of the
//     Kubernetes API compiled to validators: types, required fields, enums,
//     formats); @kubernetes-models/prometheus-operator for monitoring.coreos.com
//     (ServiceMonitor).
//  2. Unknown fields, which the API server rejects or drops (kubectl
//     --validate=strict) but the OpenAPI schemas allow: every key must be a
//     property of its type, read from the packages' TypeScript declarations
//     (.d.ts), recursively. Maps (labels, resources.limits, ...) and
//     free-form values are not descended into.
//
// The packages are looked up in $NPVDB_NODE_MODULES (default
// /opt/npvdb-tools/node_modules, where scripts/install-deps.sh puts them).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const ROOT = process.env.NPVDB_NODE_MODULES || "/opt/npvdb-tools/node_modules";
const PACKAGES = ["kubernetes-models", "@kubernetes-models/prometheus-operator"];

function modelFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/")
    ? apiVersion.split("/")
    : ["", apiVersion];
  const rel = group ? `${group}/${version}/${kind}` : `${version}/${kind}`;
  for (const pkg of PACKAGES) {
    const base = path.join(ROOT, pkg, rel);
    if (existsSync(base + ".js")) return base;
  }
  return null;
}

// ---- .d.ts: the properties of an interface and their types ----------------
const declCache = new Map();

function resolveImport(fromFile, spec) {
  const p = spec.startsWith(".")
    ? path.resolve(path.dirname(fromFile), spec)
    : path.join(ROOT, spec);
  const d = p.replace(/\.js$/, "") + ".d.ts";
  return existsSync(d) ? d : null;
}

// {fields: Map(name -> type text)} of the first interface in FILE, or null
// when the file declares a type alias (string | number, Quantity, ...).
function declaration(file) {
  if (declCache.has(file)) return declCache.get(file);
  const text = readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{([^}]*)\} from "([^"]+)";$/gm)) {
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean))
      imports.set(name, m[2]);
  }
  const start = text.search(/^export interface \w+(?: extends [\w, ]+)? \{$/m);
  let decl = null;
  if (start >= 0) {
    const body = text.slice(start, text.indexOf("\n}", start));
    const fields = new Map();
    for (const m of body.matchAll(/^ {4}"([^"]+)"\??: (.*)$/gm))
      fields.set(m[1], m[2].replace(/;$/, ""));
    decl = { fields, imports, file };
  }
  declCache.set(file, decl);
  return decl;
}

// The .d.ts of a field's type, and whether it is an array of it.
function fieldType(decl, type) {
  const m = /^(?:Array<(\w+)>|(\w+))$/.exec(type);
  if (!m) return null; // inline object, union, map: free-form here
  const name = m[1] || m[2];
  const spec = decl.imports.get(name);
  if (!spec) return null;
  const file = resolveImport(decl.file, spec);
  return file ? { file, array: !!m[1] } : null;
}

function unknownFields(value, file, where, out) {
  const decl = declaration(file);
  if (!decl || value === null || typeof value !== "object" || Array.isArray(value))
    return;
  for (const [key, v] of Object.entries(value)) {
    const here = `${where}.${key}`;
    if (!decl.fields.has(key)) {
      out.push(`${here}: unknown field (not a property of ${path.basename(file, ".d.ts")})`);
      continue;
    }
    const t = fieldType(decl, decl.fields.get(key));
    if (!t || v === null) continue;
    if (t.array && Array.isArray(v))
      v.forEach((item, i) => unknownFields(item, t.file, `${here}[${i}]`, out));
    else if (!t.array) unknownFields(v, t.file, here, out);
  }
}

// ---- main --------------------------------------------------------------------
let objects;
try {
  objects = JSON.parse(readFileSync(0, "utf8"));
  if (!Array.isArray(objects)) throw new Error("want a JSON array");
} catch (e) {
  console.error(`validate.mjs: ${e.message}`);
  process.exit(2);
}

const results = [];
for (const obj of objects) {
  const kind = obj?.kind, apiVersion = obj?.apiVersion;
  const r = { apiVersion, kind, name: obj?.metadata?.name, errors: [] };
  results.push(r);
  const base = typeof kind === "string" && typeof apiVersion === "string"
    ? modelFile(apiVersion, kind) : null;
  if (!base) {
    r.skipped = `no schema for ${apiVersion} ${kind}`;
    continue;
  }
  const mod = await import(pathToFileURL(base + ".js").href);
  try {
    new mod[kind](obj).validate();
  } catch (e) {
    for (const err of e.errors || [{ instancePath: "", message: e.message }])
      r.errors.push(`${err.instancePath || "/"}: ${err.message}` +
                    (err.params && Object.keys(err.params).length
                      ? ` ${JSON.stringify(err.params)}` : ""));
  }
  unknownFields(obj, base + ".d.ts", kind, r.errors);
}
console.log(JSON.stringify({ results }));
