/// <reference path="nex.d.ts" />
// A TypeScript function. `nex devrun examples/greeter.ts --trigger_subject greet` strips the
// types and deploys the JavaScript that is left, every line where it is here; then
// `nex req greet Ada` → `Hello, Ada!`, `nex req greet '{"name":"Ada","lang":"fr"}'` →
// `Bonjour, Ada!`.

type Lang = 'en' | 'fr' | 'de';

interface Greeting {
  name: string;
  lang?: Lang;
}

const words = {
  en: 'Hello',
  fr: 'Bonjour',
  de: 'Hallo',
} satisfies Record<Lang, string>;

/** The payload as a greeting: JSON `{name, lang}` or a bare name. */
function parse(payload: Uint8Array): Greeting {
  const text = new TextDecoder().decode(payload).trim();
  if (!text.startsWith('{')) return { name: text || 'world' };
  return JSON.parse(text) as Greeting;
}

export default (subject: string, payload: Uint8Array): string => {
  const { name, lang = 'en' } = parse(payload);
  const word: string | undefined = words[lang];
  // A language from JSON need not be one of ours: the caller gets this error, at this line.
  if (word === undefined) throw new RangeError(`no greeting in ${lang}`);
  return `${word}, ${name}!`;
};
