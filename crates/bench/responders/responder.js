// The echo service a Node.js user would write with the `nats` package: reply with the payload
// followed by the subject, as the nex echo functions do. Usage: node responder.js NATS_URL
const { connect } = require('nats');

(async () => {
  const nc = await connect({ servers: process.argv[2] });
  const sub = nc.subscribe('bench.node', { queue: 'node' });
  await nc.flush();
  console.log('ready');
  for await (const m of sub) {
    const subject = Buffer.from(m.subject);
    const out = new Uint8Array(m.data.length + subject.length);
    out.set(m.data, 0);
    out.set(subject, m.data.length);
    m.respond(out);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
