// {{name}}: a nex function in TypeScript. `nex devrun` strips the types (positions stay where
// they are, so errors point into this file) and deploys the JavaScript. nex calls it once per
// message on its trigger subjects; what it returns (a string, bytes, or a value sent as JSON)
// is the reply. Types of the globals and host services: examples/nex.d.ts in the nex repo.
(subject: string, payload: Uint8Array): string => {
  const who: string = new TextDecoder().decode(payload) || "world";
  return `Hello, ${who}!`;
}
