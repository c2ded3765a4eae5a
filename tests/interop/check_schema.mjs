// Validate messages against the schema `eventkit schema export` wrote, with ajv in its default
// (strict) mode, as a Node service would.
//
//   node check_schema.mjs SCHEMA.json < messages.json
//
// Prints {"compiled": true, "valid": [true, false, ...]} or {"compiled": false, "error": "..."}.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";

const schema = JSON.parse(readFileSync(process.argv[2], "utf8"));
const messages = JSON.parse(readFileSync(0, "utf8"));
const ajv = new Ajv2020(); // strict mode is the default
let validate;
try {
  validate = ajv.compile(schema);
} catch (e) {
  console.log(JSON.stringify({ compiled: false, error: String(e.message) }));
  process.exit(0);
}
const valid = messages.map((m) => validate(m));
console.log(JSON.stringify({ compiled: true, valid }));
