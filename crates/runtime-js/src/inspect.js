// console formatting as Node's util.format and util.inspect do it (their defaults: depth 2,
// breakLength 80, compact 3, 100 array items), so a line reads as it would under Node. Evaluated
// on the first console call that has more than plain strings and numbers to print (lib.rs).
// Returns format(args) -> string.
(function () {
  'use strict';
  const DEFAULTS = { depth: 2, breakLength: 80, compact: 3, maxArrayLength: 100, maxStringLength: 10000, showHidden: false };
  const ARRAY = 1, OBJECT = 0;
  const BUILT_INS = new Set(['Object', 'Array', 'Function', 'Error', 'EvalError', 'RangeError',
    'ReferenceError', 'SyntaxError', 'TypeError', 'URIError', 'AggregateError', 'Date', 'RegExp',
    'Map', 'Set', 'WeakMap', 'WeakSet', 'Promise', 'Number', 'String', 'Boolean', 'Symbol',
    'BigInt', 'ArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray',
    'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array',
    'BigInt64Array', 'BigUint64Array', 'Proxy', 'Reflect', 'JSON', 'Math']);
  const tagOf = (v) => Object.prototype.toString.call(v).slice(8, -1);
  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

  // ---- strings -------------------------------------------------------------------------------
  const META = [];
  for (let i = 0; i < 0x20; i++) META[i] = '\\x' + i.toString(16).toUpperCase().padStart(2, '0');
  Object.assign(META, { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r', 39: "\\'", 92: '\\\\' });
  for (let i = 0x7f; i <= 0x9f; i++) META[i] = '\\x' + i.toString(16).toUpperCase();
  const ESCAPE = /[\x00-\x1f\x27\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
  const ESCAPE_NO_SINGLE = /[\x00-\x1f\x5c\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
  function strEscape(str) {
    let quote = "'";
    let re = ESCAPE;
    if (str.includes("'")) {
      if (!str.includes('"')) quote = '"';
      else if (!str.includes('`') && !str.includes('${')) quote = '`';
      if (quote !== "'") re = ESCAPE_NO_SINGLE;
    }
    const body = str.replace(re, (c) => {
      const code = c.charCodeAt(0);
      return c.length === 1 && META[code] !== undefined ? META[code] : '\\u' + code.toString(16).toUpperCase();
    });
    return quote + body + quote;
  }

  const formatNumber = (n) => (Object.is(n, -0) ? '-0' : `${n}`);

  function formatPrimitive(ctx, value) {
    switch (typeof value) {
      case 'string': {
        let trailer = '';
        if (value.length > ctx.maxStringLength) {
          const remaining = value.length - ctx.maxStringLength;
          value = value.slice(0, ctx.maxStringLength);
          trailer = `... ${remaining} more character${remaining > 1 ? 's' : ''}`;
        }
        if (value.length > 16 && value.length > ctx.breakLength - ctx.indentationLvl - 4) {
          return value.split(/(?<=\n)/).map(strEscape).join(` +\n${' '.repeat(ctx.indentationLvl + 2)}`) + trailer;
        }
        return strEscape(value) + trailer;
      }
      case 'number': return formatNumber(value);
      case 'bigint': return `${value}n`;
      case 'symbol': return value.toString();
      default: return String(value);
    }
  }

  // ---- objects -------------------------------------------------------------------------------
  function constructorName(obj) {
    const start = obj;
    while (obj !== null && obj !== undefined) {
      const d = Object.getOwnPropertyDescriptor(obj, 'constructor');
      if (d !== undefined && typeof d.value === 'function' && d.value.name !== '') {
        try { if (start instanceof d.value) return String(d.value.name); } catch { /* not a constructor */ }
      }
      obj = Object.getPrototypeOf(obj);
    }
    return Object.getPrototypeOf(start) === null ? null : 'Object';
  }

  function prefix(constructor, tag, fallback, size = '') {
    if (constructor === null) {
      if (tag !== '' && fallback !== tag) return `[${fallback}${size}: null prototype] [${tag}] `;
      return `[${fallback}${size}: null prototype] `;
    }
    if (tag !== '' && constructor !== tag) return `${constructor}${size} [${tag}] `;
    return `${constructor}${size} `;
  }

  function keysOf(ctx, value, nonIndex) {
    let keys = ctx.showHidden ? Object.getOwnPropertyNames(value) : Object.keys(value);
    if (nonIndex) keys = keys.filter((k) => !/^(0|[1-9][0-9]*)$/.test(k) || Number(k) >= 4294967295);
    const symbols = Object.getOwnPropertySymbols(value)
      .filter((s) => ctx.showHidden || Object.prototype.propertyIsEnumerable.call(value, s));
    return symbols.length ? keys.concat(symbols) : keys;
  }

  function functionBase(value, constructor, tag) {
    const source = Function.prototype.toString.call(value);
    if (source.startsWith('class') && source.endsWith('}')) {
      let base = `[class ${value.name || '(anonymous)'}`;
      const sup = Object.getPrototypeOf(value);
      if (sup && sup.name) base += ` extends ${sup.name}`;
      return base + ']';
    }
    let type = 'Function';
    if (constructor === 'GeneratorFunction') type = 'GeneratorFunction';
    if (constructor === 'AsyncFunction') type = 'AsyncFunction';
    if (constructor === 'AsyncGeneratorFunction') type = 'AsyncGeneratorFunction';
    let base = `[${type}`;
    if (constructor === null) base += ' (null prototype)';
    base += value.name === '' ? ' (anonymous)' : `: ${value.name}`;
    base += ']';
    if (constructor !== type && constructor !== null && constructor !== 'Function') base += ` ${constructor}`;
    if (tag !== '' && constructor !== tag) base += ` [${tag}]`;
    return base;
  }

  function formatError(ctx, err, keys) {
    const name = err.name != null ? String(err.name) : 'Error';
    const message = err.message != null ? String(err.message) : '';
    let stack = typeof err.stack === 'string' ? err.stack : '';
    const head = message ? `${name}: ${message}` : name;
    // QuickJS's stack holds only the frames; V8's (which Node prints) starts with the head.
    if (!stack.startsWith(head)) stack = stack.trim() === '' ? head : `${head}\n${stack.replace(/\n$/, '')}`;
    for (const k of ['name', 'message', 'stack']) {
      const i = keys.indexOf(k);
      if (i >= 0 && typeof err[k] === 'string' && stack.includes(err[k])) keys.splice(i, 1);
    }
    if ('cause' in err && !keys.includes('cause')) keys.push('cause');
    if (!stack.includes('\n    at')) stack = `[${stack}]`;
    if (ctx.indentationLvl !== 0) stack = stack.split('\n').join(`\n${' '.repeat(ctx.indentationLvl)}`);
    return stack;
  }

  function formatValue(ctx, value, recurseTimes) {
    if (value === null) return 'null';
    if (typeof value !== 'object' && typeof value !== 'function') return formatPrimitive(ctx, value);
    if (ctx.seen.includes(value)) {
      if (!ctx.circular.has(value)) ctx.circular.set(value, ctx.circular.size + 1);
      return `[Circular *${ctx.circular.get(value)}]`;
    }
    return formatRaw(ctx, value, recurseTimes);
  }

  function formatRaw(ctx, value, recurseTimes) {
    const constructor = constructorName(value);
    let tag = value[Symbol.toStringTag];
    if (typeof tag !== 'string' || (tag !== '' && Object.prototype.propertyIsEnumerable.call(value, Symbol.toStringTag))) tag = '';
    let keys, braces, base = '', extrasType = OBJECT;
    let formatter = () => [];
    const kind = tagOf(value);
    if (Array.isArray(value)) {
      const p = constructor !== 'Array' || tag !== '' ? prefix(constructor, tag, 'Array', `(${value.length})`) : '';
      keys = keysOf(ctx, value, true);
      if (ctx.showHidden) keys = keys.filter((k) => k !== 'length').concat(['length']);
      braces = [`${p}[`, ']'];
      if (value.length === 0 && keys.length === 0) return `${braces[0]}]`;
      extrasType = ARRAY;
      formatter = formatArray;
    } else if (kind === 'Set' && value instanceof Set) {
      const p = prefix(constructor, tag, 'Set', `(${value.size})`);
      keys = keysOf(ctx, value, false);
      if (value.size === 0 && keys.length === 0) return `${p}{}`;
      braces = [`${p}{`, '}'];
      formatter = formatSet;
    } else if (kind === 'Map' && value instanceof Map) {
      const p = prefix(constructor, tag, 'Map', `(${value.size})`);
      keys = keysOf(ctx, value, false);
      if (value.size === 0 && keys.length === 0) return `${p}{}`;
      braces = [`${p}{`, '}'];
      formatter = formatMap;
    } else if (ArrayBuffer.isView(value) && kind !== 'DataView') {
      keys = keysOf(ctx, value, true);
      braces = [`${prefix(constructor, tag, kind, `(${value.length})`)}[`, ']'];
      if (value.length === 0 && keys.length === 0) return `${braces[0]}]`;
      formatter = formatTypedArray;
      extrasType = ARRAY;
    } else {
      keys = keysOf(ctx, value, false);
      braces = ['{', '}'];
      if (typeof value === 'function') {
        base = functionBase(value, constructor, tag);
        if (keys.length === 0) return base;
      } else if (constructor === 'Object' && kind === 'Object') {
        if (tag !== '') braces[0] = `${prefix(constructor, tag, 'Object')}{`;
        if (keys.length === 0) return `${braces[0]}}`;
      } else if (kind === 'RegExp') {
        base = RegExp.prototype.toString.call(value);
        const p = prefix(constructor, tag, 'RegExp');
        if (p !== 'RegExp ') base = `${p}${base}`;
        if (keys.length === 0 || recurseTimes > ctx.depth) return base;
      } else if (kind === 'Date') {
        base = Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
        const p = prefix(constructor, tag, 'Date');
        if (p !== 'Date ') base = `${p}${base}`;
        if (keys.length === 0) return base;
      } else if (value instanceof Error || kind === 'Error') {
        base = formatError(ctx, value, keys);
        if (keys.length === 0) return base;
      } else if (kind === 'ArrayBuffer') {
        const p = prefix(constructor, tag, 'ArrayBuffer');
        formatter = formatArrayBuffer;
        braces[0] = `${p}{`;
        keys.unshift('byteLength');
      } else if (kind === 'DataView') {
        braces[0] = `${prefix(constructor, tag, 'DataView')}{`;
        keys.unshift('byteLength', 'byteOffset', 'buffer');
      } else if (kind === 'Promise') {
        braces[0] = `${prefix(constructor, tag, 'Promise')}{`;
        formatter = () => ['<state unknown>'];
      } else if (kind === 'WeakSet' || kind === 'WeakMap') {
        return `${prefix(constructor, tag, kind)}{ <items unknown> }`;
      } else if (['Number', 'String', 'Boolean', 'BigInt', 'Symbol'].includes(kind)) {
        const prim = value.valueOf();
        base = `[${kind}${constructor !== kind ? ` (${constructor})` : ''}: ${formatPrimitive({ ...DEFAULTS, indentationLvl: 0 }, prim)}]`;
        if (kind === 'String') keys = keys.filter((k) => !/^(0|[1-9][0-9]*)$/.test(k) && k !== 'length');
        if (keys.length === 0) return base;
      } else {
        if (keys.length === 0) return `${prefix(constructor, tag, 'Object')}{}`;
        braces[0] = `${prefix(constructor, tag, 'Object')}{`;
      }
    }
    if (recurseTimes > ctx.depth) {
      let name = prefix(constructor, tag, 'Object').slice(0, -1);
      if (constructor !== null) name = `[${name}]`;
      return name;
    }
    recurseTimes += 1;
    ctx.seen.push(value);
    ctx.currentDepth = recurseTimes;
    const output = formatter(ctx, value, recurseTimes);
    for (const key of keys) output.push(formatProperty(ctx, value, recurseTimes, key, extrasType));
    ctx.seen.pop();
    if (ctx.circular.has(value)) {
      const reference = `<ref *${ctx.circular.get(value)}>`;
      base = base === '' ? reference : `${reference} ${base}`;
    }
    return reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value);
  }

  const remainingText = (n) => `... ${n} more item${n > 1 ? 's' : ''}`;

  function formatArray(ctx, value, recurseTimes) {
    const len = Math.min(ctx.maxArrayLength, value.length);
    const output = [];
    for (let i = 0; i < len; i++) {
      if (!hasOwn(value, i)) {
        let j = i;
        while (j < value.length && !hasOwn(value, j)) j++;
        const n = j - i;
        output.push(`<${n} empty item${n > 1 ? 's' : ''}>`);
        i = j - 1;
        continue;
      }
      output.push(formatProperty(ctx, value, recurseTimes, i, ARRAY));
    }
    if (value.length > len) output.push(remainingText(value.length - len));
    return output;
  }

  function formatTypedArray(ctx, value) {
    const len = Math.min(ctx.maxArrayLength, value.length);
    const output = [];
    for (let i = 0; i < len; i++) output.push(typeof value[i] === 'bigint' ? `${value[i]}n` : formatNumber(value[i]));
    if (value.length > len) output.push(remainingText(value.length - len));
    return output;
  }

  function formatArrayBuffer(ctx, value) {
    const bytes = new Uint8Array(value);
    const shown = [...bytes.subarray(0, ctx.maxArrayLength)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const remaining = bytes.length - ctx.maxArrayLength;
    return [`[Uint8Contents]: <${shown}${remaining > 0 ? ` ... ${remaining} more byte${remaining > 1 ? 's' : ''}` : ''}>`];
  }

  function formatSet(ctx, value, recurseTimes) {
    const output = [];
    ctx.indentationLvl += 2;
    let i = 0;
    for (const v of value) {
      if (i++ >= ctx.maxArrayLength) break;
      output.push(formatValue(ctx, v, recurseTimes));
    }
    if (value.size > ctx.maxArrayLength) output.push(remainingText(value.size - ctx.maxArrayLength));
    ctx.indentationLvl -= 2;
    return output;
  }

  function formatMap(ctx, value, recurseTimes) {
    const output = [];
    ctx.indentationLvl += 2;
    let i = 0;
    for (const [k, v] of value) {
      if (i++ >= ctx.maxArrayLength) break;
      output.push(`${formatValue(ctx, k, recurseTimes)} => ${formatValue(ctx, v, recurseTimes)}`);
    }
    if (value.size > ctx.maxArrayLength) output.push(remainingText(value.size - ctx.maxArrayLength));
    ctx.indentationLvl -= 2;
    return output;
  }

  function formatProperty(ctx, value, recurseTimes, key, type) {
    let str;
    const desc = Object.getOwnPropertyDescriptor(value, key) || { value: value[key], enumerable: true };
    if (desc.value !== undefined) {
      ctx.indentationLvl += 2;
      str = formatValue(ctx, desc.value, recurseTimes);
      ctx.indentationLvl -= 2;
    } else if (desc.get !== undefined) {
      str = desc.set !== undefined ? '[Getter/Setter]' : '[Getter]';
    } else if (desc.set !== undefined) {
      str = '[Setter]';
    } else {
      str = 'undefined';
    }
    if (type === ARRAY && typeof key === 'number') return str;
    let name;
    if (typeof key === 'symbol') name = `[${key.toString()}]`;
    else if (key === '__proto__') name = "['__proto__']";
    else if (desc.enumerable === false) name = `[${key}]`;
    else if (/^[a-zA-Z_][a-zA-Z_0-9]*$/.test(key)) name = key;
    else name = strEscape(key);
    return `${name}: ${str}`;
  }

  function groupArrayElements(ctx, output, value) {
    let totalLength = 0, maxLength = 0, i = 0;
    let outputLength = output.length;
    if (ctx.maxArrayLength < output.length) outputLength--;
    const separatorSpace = 2;
    const dataLen = new Array(outputLength);
    for (; i < outputLength; i++) {
      const len = output[i].length;
      dataLen[i] = len;
      totalLength += len + separatorSpace;
      if (maxLength < len) maxLength = len;
    }
    const actualMax = maxLength + separatorSpace;
    if (actualMax * 3 + ctx.indentationLvl < ctx.breakLength &&
        (totalLength / actualMax > 5 || maxLength <= 6)) {
      const averageBias = Math.sqrt(actualMax - totalLength / output.length);
      const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
      const columns = Math.min(
        Math.round(Math.sqrt(2.5 * biasedMax * outputLength) / biasedMax),
        Math.floor((ctx.breakLength - ctx.indentationLvl) / actualMax),
        ctx.compact * 4,
        15,
      );
      if (columns <= 1) return output;
      const tmp = [];
      const maxLineLength = [];
      for (let c = 0; c < columns; c++) {
        let lineLength = 0;
        for (let j = c; j < output.length; j += columns) if (dataLen[j] > lineLength) lineLength = dataLen[j];
        maxLineLength.push(lineLength + separatorSpace);
      }
      let padStart = true;
      if (value !== undefined) {
        for (let k = 0; k < output.length; k++) {
          if (typeof value[k] !== 'number' && typeof value[k] !== 'bigint') { padStart = false; break; }
        }
      }
      for (let k = 0; k < outputLength; k += columns) {
        const max = Math.min(k + columns, outputLength);
        let str = '';
        let j = k;
        for (; j < max - 1; j++) {
          const cell = `${output[j]}, `;
          str += padStart ? cell.padStart(maxLineLength[j - k], ' ') : cell.padEnd(maxLineLength[j - k], ' ');
        }
        str += padStart ? output[j].padStart(maxLineLength[j - k] - separatorSpace, ' ') : output[j];
        tmp.push(str);
      }
      if (ctx.maxArrayLength < output.length) tmp.push(output[outputLength]);
      output = tmp;
    }
    return output;
  }

  function isBelowBreakLength(ctx, output, start, base) {
    let totalLength = output.length + start;
    if (totalLength + output.length > ctx.breakLength) return false;
    for (const entry of output) {
      totalLength += entry.length;
      if (totalLength > ctx.breakLength) return false;
    }
    return base === '' || !base.includes('\n');
  }

  function reduceToSingleString(ctx, output, base, braces, extrasType, recurseTimes, value) {
    const entries = output.length;
    if (extrasType === ARRAY && entries > 6) output = groupArrayElements(ctx, output, value);
    if (ctx.currentDepth - recurseTimes < ctx.compact && entries === output.length) {
      const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
      if (isBelowBreakLength(ctx, output, start, base)) {
        const joined = output.join(', ');
        if (!joined.includes('\n')) return `${base ? `${base} ` : ''}${braces[0]} ${joined} ${braces[1]}`;
      }
    }
    const indentation = `\n${' '.repeat(ctx.indentationLvl)}`;
    return `${base ? `${base} ` : ''}${braces[0]}${indentation}  ${output.join(`,${indentation}  `)}${indentation}${braces[1]}`;
  }

  function inspect(value, options) {
    const ctx = { ...DEFAULTS, ...options, seen: [], circular: new Map(), indentationLvl: 0, currentDepth: 0 };
    return formatValue(ctx, value, 0);
  }

  function hasBuiltInToString(value) {
    if (typeof value.toString !== 'function') return true;
    if (hasOwn(value, 'toString')) return false;
    let pointer = value;
    do { pointer = Object.getPrototypeOf(pointer); } while (pointer !== null && !hasOwn(pointer, 'toString'));
    if (pointer === null) return true;
    const d = Object.getOwnPropertyDescriptor(pointer, 'constructor');
    return d !== undefined && typeof d.value === 'function' && BUILT_INS.has(d.value.name);
  }

  function tryStringify(v) {
    try { return JSON.stringify(v); } catch (e) {
      if (e instanceof TypeError && /circular/i.test(e.message)) return '[Circular]';
      throw e;
    }
  }

  // util.format: printf-like substitutions in a leading string, the rest inspected.
  return function format(args) {
    const first = args[0];
    let a = 0, str = '', join = '';
    if (typeof first === 'string') {
      if (args.length === 1) return first;
      let tempStr, lastPos = 0;
      for (let i = 0; i < first.length - 1; i++) {
        if (first.charCodeAt(i) !== 37) continue;
        const next = first.charCodeAt(++i);
        if (a + 1 !== args.length) {
          switch (next) {
            case 115: { // s
              const v = args[++a];
              if (typeof v === 'number') tempStr = formatNumber(v);
              else if (typeof v === 'bigint') tempStr = `${v}n`;
              else if (typeof v !== 'object' || v === null || !hasBuiltInToString(v)) tempStr = String(v);
              else tempStr = inspect(v, { depth: 0 });
              break;
            }
            case 106: tempStr = tryStringify(args[++a]); break; // j
            case 100: { // d
              const v = args[++a];
              tempStr = typeof v === 'bigint' ? `${v}n` : typeof v === 'symbol' ? 'NaN' : formatNumber(Number(v));
              break;
            }
            case 79: tempStr = inspect(args[++a]); break; // O
            case 111: tempStr = inspect(args[++a], { showHidden: true, depth: 4 }); break; // o
            case 105: { // i
              const v = args[++a];
              tempStr = typeof v === 'bigint' ? `${v}n` : typeof v === 'symbol' ? 'NaN' : formatNumber(Number.parseInt(v));
              break;
            }
            case 102: { // f
              const v = args[++a];
              tempStr = typeof v === 'symbol' ? 'NaN' : formatNumber(Number.parseFloat(v));
              break;
            }
            case 99: a += 1; tempStr = ''; break; // c
            case 37: str += first.slice(lastPos, i); lastPos = i + 1; continue; // %
            default: continue;
          }
          if (lastPos !== i - 1) str += first.slice(lastPos, i - 1);
          str += tempStr;
          lastPos = i + 1;
        } else if (next === 37) {
          str += first.slice(lastPos, i);
          lastPos = i + 1;
        }
      }
      if (lastPos !== 0) {
        a++;
        join = ' ';
        if (lastPos < first.length) str += first.slice(lastPos);
      }
    }
    while (a < args.length) {
      const v = args[a];
      str += join;
      str += typeof v !== 'string' ? inspect(v) : v;
      join = ' ';
      a++;
    }
    return str;
  };
})
