// A small Markdown renderer that builds DOM nodes: model text only ever becomes text nodes.
//
// Blocks: paragraphs (single newlines kept as line breaks), headings, fenced code, bullet and
// numbered lists (nested by indentation), block quotes, rules. Inline: `code`, **bold**,
// *italic*, [links](https://…) and bare https:// URLs (http and https only; anything else stays
// text), and `[n]` citation markers when the caller says what they point to. Left out: tables,
// images and raw HTML, which is shown as the text it is.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const BULLET = /^( {0,3})([-*+])\s+(.*)$/;
const NUMBERED = /^( {0,3})(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const CITATION = /^\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/;
const LINK = /^\[([^\]\n]+)\]\(\s*<?([^\s()<>]+)>?(?:\s+"[^"\n]*")?\s*\)/;
const BARE_URL = /^https?:\/\/[^\s<>()[\]"'`]+/;

/**
 * Render `text` as a DocumentFragment.
 * @param {string} text
 * @param {{cite?: (n: number) => Node | null}} [options] cite: the link for marker `[n]`, or
 *   null to leave the marker as text.
 */
export function renderMarkdown(text, options = {}) {
  const fragment = document.createDocumentFragment();
  blocks(text.replace(/\r\n?/g, "\n").split("\n"), fragment, options);
  return fragment;
}

/** The URL if it is an absolute http(s) one, else null. */
export function safeUrl(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens elsewhere and tells the other site nothing about this page. */
export function externalLink(href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.textContent = label;
  return a;
}

function el(tag, parent) {
  const node = document.createElement(tag);
  parent.append(node);
  return node;
}

function startsBlock(line) {
  return (
    FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
    BULLET.test(line) || NUMBERED.test(line)
  );
}

function blocks(lines, parent, options) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) {
      i += 1;
    } else if ((match = FENCE.exec(line))) {
      const fence = match[1];
      const body = [];
      for (i += 1; i < lines.length && !lines[i].trimStart().startsWith(fence); i += 1) {
        body.push(lines[i]);
      }
      i += 1; // the closing fence (an unclosed one, still streaming, runs to the end)
      const code = el("code", el("pre", parent));
      if (match[2]) code.dataset.language = match[2];
      code.textContent = body.join("\n");
    } else if ((match = HEADING.exec(line))) {
      // An answer's headings sit below the page's own: # becomes h3.
      inline(match[2], el(`h${Math.min(match[1].length + 2, 6)}`, parent), options);
      i += 1;
    } else if (RULE.test(line)) {
      el("hr", parent);
      i += 1;
    } else if (QUOTE.test(line)) {
      const body = [];
      for (; i < lines.length && (match = QUOTE.exec(lines[i])); i += 1) body.push(match[1]);
      blocks(body, el("blockquote", parent), options);
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      i = list(lines, i, parent, options);
    } else {
      const body = [line];
      for (i += 1; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i += 1) {
        body.push(lines[i]);
      }
      inline(body.map((l) => l.trim()).join("\n"), el("p", parent), options);
    }
  }
}

function list(lines, start, parent, options) {
  const numbered = NUMBERED.test(lines[start]);
  const marker = numbered ? NUMBERED : BULLET;
  const first = marker.exec(lines[start]);
  const node = el(numbered ? "ol" : "ul", parent);
  if (numbered && first[2] !== "1") node.start = Number(first[2]);
  const items = [];
  let i = start;
  while (i < lines.length) {
    const match = marker.exec(lines[i]);
    if (match && match[1].length <= first[1].length) {
      items.push([match[3]]);
      i += 1;
    } else if (lines[i].trim() && /^\s/.test(lines[i]) && items.length) {
      items[items.length - 1].push(lines[i].replace(/^ {1,4}/, "")); // continuation or nested
      i += 1;
    } else if (!lines[i].trim() && i + 1 < lines.length && marker.test(lines[i + 1])) {
      i += 1; // a blank line between items
    } else {
      break;
    }
  }
  for (const item of items) {
    const li = el("li", node);
    blocks(item, li, options);
    // A one-paragraph item is written without its <p>, as lists usually are.
    if (li.childNodes.length === 1 && li.firstChild.nodeName === "P") {
      li.replaceChildren(...li.firstChild.childNodes);
    }
  }
  return i;
}

function inline(text, parent, options) {
  let plain = "";
  const flush = () => {
    if (plain) parent.append(document.createTextNode(plain));
    plain = "";
  };
  const add = (node) => {
    flush();
    parent.append(node);
  };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const ch = text[i];
    let match;
    if (ch === "\\" && /[\\`*_[\]()#>!-]/.test(text[i + 1] ?? "")) {
      plain += text[i + 1];
      i += 2;
    } else if (ch === "\n") {
      add(document.createElement("br"));
      i += 1;
    } else if (ch === "`" && (match = /^(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.exec(rest))) {
      const code = document.createElement("code");
      code.textContent = match[2].replace(/^ (.*) $/, "$1");
      add(code);
      i += match[0].length;
    } else if ((ch === "*" || ch === "_") && (match = emphasis(text, i))) {
      const node = document.createElement(match.strong ? "strong" : "em");
      inline(match.inner, node, options);
      add(node);
      i = match.end;
    } else if (ch === "[" && (match = CITATION.exec(rest)) && options.cite) {
      const links = match[1].split(",").map((n) => options.cite(Number(n.trim())));
      if (links.every(Boolean)) {
        links.forEach((link) => add(link));
      } else {
        plain += match[0];
      }
      i += match[0].length;
    } else if (ch === "[" && (match = LINK.exec(rest))) {
      const href = safeUrl(match[2]);
      if (href) {
        const a = externalLink(href, "");
        inline(match[1], a, options);
        add(a);
      } else {
        plain += match[1]; // the label alone: a javascript: or relative target is dropped
      }
      i += match[0].length;
    } else if (ch === "<" && (match = /^<(https?:\/\/[^\s<>]+)>/.exec(rest)) && safeUrl(match[1])) {
      add(externalLink(safeUrl(match[1]), match[1]));
      i += match[0].length;
    } else if (ch === "h" && !/\w/.test(text[i - 1] ?? "") && (match = BARE_URL.exec(rest))) {
      const url = match[0].replace(/[.,;:!?]+$/, "");
      const href = safeUrl(url);
      if (href) add(externalLink(href, url));
      else plain += url;
      i += url.length;
    } else {
      plain += ch;
      i += 1;
    }
  }
  flush();
}

/** `**strong**` or `*em*` (or with `_`) starting at `i`: its inner text and end, or null. */
function emphasis(text, i) {
  const ch = text[i];
  const strong = text[i + 1] === ch;
  const mark = strong ? ch + ch : ch;
  const start = i + mark.length;
  if (!text[start] || /\s/.test(text[start])) return null;
  if (ch === "_" && /\w/.test(text[i - 1] ?? "")) return null; // snake_case stays as written
  for (let j = start + 1; j <= text.length - mark.length; j += 1) {
    if (text.startsWith(mark, j) && !/\s/.test(text[j - 1])) {
      if (!strong && text[j + 1] === ch) continue; // part of a `**`, not this `*`'s end
      if (ch === "_" && /\w/.test(text[j + mark.length] ?? "")) continue;
      return { strong, inner: text.slice(start, j), end: j + mark.length };
    }
  }
  return null;
}
