// Type declarations for nex JavaScript functions. Reference this file from your editor
// (`/// <reference path="nex.d.ts" />`) to get completion for `hostServices`.

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
