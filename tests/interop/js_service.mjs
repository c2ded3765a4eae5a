// A Node service on nats.js, as a NestJS JetStream transport service would be: a durable
// consumer over the whole stream that decodes every body as JSON and reads eventkit's headers,
// then publishes an event of its own (twice, to show the server deduplicates it).
//
//   node js_service.mjs nats://127.0.0.1:4222 STREAM DURABLE
//
// Prints one JSON document: {"messages": [...], "published": SEQ, "duplicate": BOOL}.
import { AckPolicy, DeliverPolicy, JSONCodec, connect, headers } from "nats";

const [url, stream, durable] = process.argv.slice(2);
const nc = await connect({ servers: url });
const jsm = await nc.jetstreamManager();
await jsm.consumers.add(stream, {
  durable_name: durable,
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
  filter_subject: `${stream}.>`,
});
const js = nc.jetstream();
const consumer = await js.consumers.get(stream, durable);
const header = (h, name) => (h && h.has(name) ? h.get(name) : null);
const messages = [];
for (;;) {
  const batch = await consumer.fetch({ max_messages: 100, expires: 1000 });
  let n = 0;
  for await (const m of batch) {
    n += 1;
    let body = null;
    let json = true;
    try {
      body = JSON.parse(new TextDecoder().decode(m.data));
    } catch {
      json = false; // what the transport's JSON decoder would log as "Bad JSON"
    }
    messages.push({
      seq: m.seq,
      subject: m.subject,
      type: header(m.headers, "Eventkit-Type"),
      system: header(m.headers, "Eventkit-System"),
      enc: header(m.headers, "Eventkit-Enc"),
      json,
      body,
    });
    m.ack();
  }
  if (n === 0) break;
}

const h = headers();
h.set("Nats-Msg-Id", "order-o-1");
h.set("Eventkit-Type", "JsOrderPlaced");
const subject = `${stream}.orders.o-1`;
const first = await js.publish(subject, JSONCodec().encode({ total: 30 }), { headers: h });
const again = await js.publish(subject, JSONCodec().encode({ total: 30 }), { headers: h });
console.log(JSON.stringify({ messages, published: first.seq, duplicate: again.duplicate }));
await nc.drain();
