// Verifies the hash chains eventkit wrote, from the wire format alone (docs/wire-format.md,
// "Hash chain"), as a NestJS or other Node service would: an ordered consumer over the stream,
// one running link per subject, SHA-256 from node:crypto.
//
//   node verify_chain.mjs nats://127.0.0.1:4222 STREAM
//
// Prints one JSON document: {"chained": N, "outside": N, "erased": N, "problems": [...]}.
import { createHash } from "node:crypto";
import { connect } from "nats";

const [url, stream] = process.argv.slice(2);
const GENESIS = "0".repeat(64);
const nc = await connect({ servers: url });
const js = nc.jetstream();
const jsm = await nc.jetstreamManager();
const last = (await jsm.streams.info(stream)).state.last_seq;
const consumer = await js.consumers.get(stream, { filterSubjects: [`${stream}.>`] });
const get = (h, name) => (h && h.has(name) ? h.get(name) : "");
const all = [];
if (last > 0) {
  const messages = await consumer.consume();
  for await (const m of messages) {
    all.push({ subject: m.subject, seq: m.seq, h: m.headers, data: m.data });
    if (m.seq >= last) break;
  }
}
// the records forget --seq left: <stream>._eventkit.erased.<rest of the subject>
const erasedPrefix = `${stream}._eventkit.erased.`;
const erased = new Map();
for (const m of all) {
  if (m.subject.startsWith(erasedPrefix) && get(m.h, "Eventkit-System") === "erased-message") {
    const subject = `${stream}.${m.subject.slice(erasedPrefix.length)}`;
    const list = erased.get(subject) ?? [];
    list.push({ prev: get(m.h, "Eventkit-Erased-Prev"), link: get(m.h, "Eventkit-Erased-Chain") });
    erased.set(subject, list);
  }
}
const bridged = (subject, running, prev) => {
  const records = erased.get(subject) ?? [];
  for (let i = 0; i < records.length; i += 1) {
    const r = records.find((x) => x.prev === running);
    if (!r) return false;
    running = r.link;
    if (running === prev) return true;
  }
  return false;
};
const heads = new Map();
const problems = [];
let chained = 0;
let outside = 0;
let erasedLinks = 0;
for (const m of all) {
  const h = m.h;
  const value = get(h, "Eventkit-Chain");
  if (m.subject.startsWith(`${stream}._eventkit.`)) continue;
  if (!value) {
    outside += 1;
    continue;
  }
  chained += 1;
  const prev = get(h, "Eventkit-Chain-Prev");
  const running = heads.get(m.subject) ?? GENESIS;
  const marker = get(h, "Eventkit-System") === "erased"; // closes the chain, whatever came before
  if (prev !== running && !marker) {
    if (bridged(m.subject, running, prev)) erasedLinks += 1;
    else problems.push({ subject: m.subject, seq: m.seq, what: "link" });
  }
  const fields = [prev, m.subject, get(h, "Eventkit-Type"), get(h, "Eventkit-Schema"),
    get(h, "Nats-Msg-Id"), get(h, "Eventkit-System")];
  const link = createHash("sha256").update(fields.join("\n") + "\n").update(m.data).digest("hex");
  if (link !== value) problems.push({ subject: m.subject, seq: m.seq, what: "content" });
  heads.set(m.subject, value);
}
console.log(JSON.stringify({ chained, outside, erased: erasedLinks, problems }));
await nc.close();
