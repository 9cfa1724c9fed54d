// Type declarations for nex JavaScript functions. Reference this file from your editor
// (`/// <reference path="nex.d.ts" />`) to get completion for `hostServices` and the Web globals
// nex provides (docs/javascript.md lists them). It declares exactly those, so use it with
// `"lib": ["es2023"]` and without `"dom"` (whose declarations it would duplicate).

/** Bytes a host service accepts: raw bytes, text (sent as UTF-8), or any value (sent as JSON). */
type NexData = Uint8Array | ArrayBuffer | string | null | undefined | object;

interface NexHttpResponse {
  status: number;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  /** The body decoded as UTF-8. */
  response: string;
  /** The body as raw bytes. */
  body: Uint8Array;
}

interface NexHttpOptions {
  headers?: Record<string, string>;
}

type NexHttpMethod = (url: string, body?: NexData, options?: NexHttpOptions) => NexHttpResponse;

interface NexObjectInfo {
  name: string;
  size: number;
  bucket: string;
  nuid: string;
  chunks: number;
  modified?: string;
  digest?: string;
  deleted?: boolean;
}

interface NexMessagingOptions {
  /** Milliseconds to wait (default 5000, at most 60000). */
  timeout?: number;
  /** requestMany: most replies to gather (default 100). */
  max?: number;
}

/** What a failed host-service call throws: `message` says what failed, `code` how (the stable
 * names of `nex_hostapi::ErrorKind`). */
interface NexHostError extends Error {
  code: 'InvalidArgument' | 'NotFound' | 'Denied' | 'Unavailable' | 'Timeout' | 'TooLarge' |
    'RateLimited' | 'Internal';
}

/** Each method also exists as `<name>Async`, returning a Promise of the same result. */
interface NexHostServices {
  http: {
    get: NexHttpMethod; post: NexHttpMethod; put: NexHttpMethod; patch: NexHttpMethod;
    del: NexHttpMethod; delete: NexHttpMethod; head: NexHttpMethod;
  };
  kv: {
    get(key: string): Uint8Array | null;
    set(key: string, value: NexData): void;
    delete(key: string): void;
    keys(): string[];
    /** Atomically adds `by` to the decimal count stored at `key` (missing: 0); the new count. */
    increment(key: string, by?: number): number;
    incrementAsync(key: string, by?: number): Promise<number>;
    getAsync(key: string): Promise<Uint8Array | null>;
    setAsync(key: string, value: NexData): Promise<void>;
    deleteAsync(key: string): Promise<void>;
    keysAsync(): Promise<string[]>;
  };
  objectStore: {
    get(name: string): Uint8Array | null;
    put(name: string, data: NexData): NexObjectInfo;
    delete(name: string): void;
    list(): NexObjectInfo[];
    getAsync(name: string): Promise<Uint8Array | null>;
    putAsync(name: string, data: NexData): Promise<NexObjectInfo>;
    deleteAsync(name: string): Promise<void>;
    listAsync(): Promise<NexObjectInfo[]>;
  };
  messaging: {
    publish(subject: string, payload?: NexData): void;
    request(subject: string, payload?: NexData, options?: NexMessagingOptions): Uint8Array;
    requestMany(subject: string, payload?: NexData, options?: NexMessagingOptions): Uint8Array[];
    publishAsync(subject: string, payload?: NexData): Promise<void>;
    requestAsync(subject: string, payload?: NexData, options?: NexMessagingOptions): Promise<Uint8Array>;
    requestManyAsync(subject: string, payload?: NexData, options?: NexMessagingOptions): Promise<Uint8Array[]>;
  };
}

/** What a function's `this` is bound to. */
interface NexFunctionThis {
  hostServices: NexHostServices;
  /** The deploy's environment (opened by the node from the sealed `environment`). */
  env: Record<string, string>;
}

/** A nex function: the file is one expression of this type. Return bytes, a string, a JSON-able
 * value, or nothing (no reply); a Promise is awaited. */
type NexFunction = (this: NexFunctionThis, subject: string, payload: Uint8Array) => unknown;

declare const hostServices: NexHostServices;
declare const process: { env: Record<string, string> };

/** The ES module forms: `export default fn` or `export default { handle }`. */
interface NexModule {
  handle(subject: string, payload: Uint8Array): unknown;
}

// ---- Web platform globals (WinterTC Minimum Common API, the part nex implements) -------------

type BufferSource = ArrayBuffer | ArrayBufferView;

declare class DOMException extends Error {
  constructor(message?: string, name?: string);
  readonly name: string;
  /** The legacy numeric code of `name` (e.g. 20 for AbortError), or 0. */
  readonly code: number;
}

declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(input: string, dest: Uint8Array): { read: number; written: number };
}

declare class TextDecoder {
  /** utf-8 under any of its labels; other encodings throw a RangeError. */
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  /** With `{stream: true}`, a sequence cut at the end is kept for the next call. */
  decode(input?: BufferSource, options?: { stream?: boolean }): string;
}

declare function atob(data: string): string;
declare function btoa(data: string): string;
declare function structuredClone<T>(value: T, options?: { transfer?: [] }): T;
declare function queueMicrotask(callback: () => void): void;
declare function setTimeout<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function setInterval<A extends unknown[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function clearTimeout(id: number | undefined): void;
declare function clearInterval(id: number | undefined): void;

declare const performance: { now(): number; readonly timeOrigin: number; toJSON(): { timeOrigin: number } };

declare class CryptoKey {
  private constructor();
  readonly type: "secret";
  readonly algorithm: { name: "HMAC"; hash: { name: string }; length: number };
  readonly extractable: boolean;
  readonly usages: ("sign" | "verify")[];
}
type NexHash = "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512" | { name: "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512" };
declare const crypto: {
  getRandomValues<T extends Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array>(array: T): T;
  randomUUID(): string;
  subtle: {
    digest(algorithm: NexHash, data: BufferSource): Promise<ArrayBuffer>;
    importKey(format: "raw", keyData: BufferSource, algorithm: { name: "HMAC"; hash: NexHash }, extractable: boolean, usages: ("sign" | "verify")[]): Promise<CryptoKey>;
    exportKey(format: "raw", key: CryptoKey): Promise<ArrayBuffer>;
    sign(algorithm: "HMAC" | { name: "HMAC" }, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer>;
    verify(algorithm: "HMAC" | { name: "HMAC" }, key: CryptoKey, signature: BufferSource, data: BufferSource): Promise<boolean>;
  };
};

declare class URLSearchParams implements Iterable<[string, string]> {
  constructor(init?: string | Record<string, string> | Iterable<[string, string]>);
  readonly size: number;
  append(name: string, value: string): void;
  delete(name: string, value?: string): void;
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string, value?: string): boolean;
  set(name: string, value: string): void;
  sort(): void;
  forEach(callback: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  toString(): string;
}

declare class URL {
  constructor(url: string | URL, base?: string | URL);
  static canParse(url: string | URL, base?: string | URL): boolean;
  static parse(url: string | URL, base?: string | URL): URL | null;
  href: string;
  readonly origin: string;
  protocol: string;
  username: string;
  password: string;
  host: string;
  hostname: string;
  port: string;
  pathname: string;
  search: string;
  readonly searchParams: URLSearchParams;
  hash: string;
  toString(): string;
  toJSON(): string;
}

declare class Event {
  constructor(type: string, init?: { bubbles?: boolean; cancelable?: boolean; composed?: boolean });
  readonly type: string;
  readonly target: EventTarget | null;
  readonly currentTarget: EventTarget | null;
  readonly cancelable: boolean;
  readonly defaultPrevented: boolean;
  readonly timeStamp: number;
  preventDefault(): void;
  stopPropagation(): void;
  stopImmediatePropagation(): void;
}

type NexListener = ((event: Event) => void) | { handleEvent(event: Event): void };
declare class EventTarget {
  addEventListener(type: string, listener: NexListener | null, options?: boolean | { once?: boolean; capture?: boolean; signal?: AbortSignal }): void;
  removeEventListener(type: string, listener: NexListener | null, options?: boolean | { capture?: boolean }): void;
  dispatchEvent(event: Event): boolean;
}

declare class AbortSignal extends EventTarget {
  private constructor();
  readonly aborted: boolean;
  readonly reason: unknown;
  onabort: ((this: AbortSignal, event: Event) => void) | null;
  throwIfAborted(): void;
  static abort(reason?: unknown): AbortSignal;
  /** Aborts with a TimeoutError after `ms`; a fetch given it is cut short by the node when it is due. */
  static timeout(ms: number): AbortSignal;
  static any(signals: Iterable<AbortSignal>): AbortSignal;
}

declare class AbortController {
  readonly signal: AbortSignal;
  abort(reason?: unknown): void;
}

type HeadersInit = Headers | [string, string][] | Record<string, string>;
declare class Headers implements Iterable<[string, string]> {
  constructor(init?: HeadersInit);
  append(name: string, value: string): void;
  delete(name: string): void;
  get(name: string): string | null;
  has(name: string): boolean;
  set(name: string, value: string): void;
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

declare class Blob {
  constructor(parts?: Iterable<string | ArrayBuffer | ArrayBufferView | Blob>, options?: { type?: string });
  readonly size: number;
  /** Lower-cased. */
  readonly type: string;
  slice(start?: number, end?: number, type?: string): Blob;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
}

declare class File extends Blob {
  constructor(parts: Iterable<string | ArrayBuffer | ArrayBufferView | Blob>, name: string, options?: { type?: string; lastModified?: number });
  readonly name: string;
  readonly lastModified: number;
}

type FormDataEntryValue = string | File;
declare class FormData implements Iterable<[string, FormDataEntryValue]> {
  constructor();
  /** A Blob value becomes a File named `filename`, its own name, or `blob`. */
  append(name: string, value: string | Blob, filename?: string): void;
  set(name: string, value: string | Blob, filename?: string): void;
  get(name: string): FormDataEntryValue | null;
  getAll(name: string): FormDataEntryValue[];
  has(name: string): boolean;
  delete(name: string): void;
  forEach(callback: (value: FormDataEntryValue, name: string, form: FormData) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, FormDataEntryValue]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<FormDataEntryValue>;
  [Symbol.iterator](): IterableIterator<[string, FormDataEntryValue]>;
}

/** A body: text (UTF-8), bytes, form parameters, a Blob (its type), or multipart form data. */
type BodyInit = string | ArrayBuffer | ArrayBufferView | URLSearchParams | Blob | FormData;

interface NexBody {
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
  /** A Blob typed by the `content-type` header. */
  blob(): Promise<Blob>;
  /** Parsed by `content-type`: multipart/form-data or application/x-www-form-urlencoded. */
  formData(): Promise<FormData>;
}

interface RequestInit {
  /** GET, POST, PUT, PATCH, DELETE or HEAD (what the node's HTTP service speaks). */
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit | null;
  signal?: AbortSignal | null;
}

declare class Request implements NexBody {
  constructor(input: string | URL | Request, init?: RequestInit);
  readonly url: string;
  readonly method: string;
  readonly headers: Headers;
  readonly signal: AbortSignal;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
  blob(): Promise<Blob>;
  formData(): Promise<FormData>;
  clone(): Request;
}

interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

declare class Response implements NexBody {
  constructor(body?: BodyInit | null, init?: ResponseInit);
  static json(data: unknown, init?: ResponseInit): Response;
  static error(): Response;
  static redirect(url: string | URL, status?: number): Response;
  readonly status: number;
  readonly ok: boolean;
  readonly statusText: string;
  readonly headers: Headers;
  readonly type: "default" | "basic" | "error";
  readonly url: string;
  readonly redirected: boolean;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
  blob(): Promise<Blob>;
  formData(): Promise<FormData>;
  clone(): Response;
}

/** Performed by the node's HTTP host service (its allow/deny policy, 10 s limit, 16 MiB cap);
 * a network or policy failure rejects with a TypeError whose `cause` is the host error. */
declare function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;

declare const console: {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  debug(...data: unknown[]): void;
  trace(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  dir(value: unknown): void;
  assert(condition: unknown, ...data: unknown[]): void;
};
