// {{name}}: a nex function in JavaScript. nex calls it once per message on its trigger
// subjects; `payload` is a Uint8Array, and what it returns (a string, bytes, or a value sent as
// JSON) is the reply. Host services: this.hostServices.kv / objectStore / messaging / http,
// fetch(), console.log (to `nex logs`). Types for editors: examples/nex.d.ts in the nex repo.
(subject, payload) => {
  const who = new TextDecoder().decode(payload) || "world";
  return `Hello, ${who}!`;
}
