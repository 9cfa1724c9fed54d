// Core messaging from a function: publishes the payload, asks one responder and gathers many.
async (subject, payload) => {
  const m = this.hostServices.messaging;
  m.publish('demo.published', payload);
  const one = await m.requestAsync('demo.one', payload);
  const many = m.requestMany('demo.many', payload, { timeout: 2000 });
  const text = (b) => String.fromCharCode(...b);
  return { one: text(one), many: many.map(text).sort() };
};
