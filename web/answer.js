// One answer in the conversation: its tool cards, its text (streamed, then final), its sources.
//
// The text shown is what the server sends as the reader's answer (`answer` events: no call
// syntax, nothing to parse here); the final answer then replaces it, with its references.

import { externalLink, renderMarkdown, safeUrl } from "./markdown.js";

let answers = 0;

export class AnswerView {
  /** `browsing`: a WebGPT answer, whose many browser commands fold into one summary card. */
  constructor({ browsing = false } = {}) {
    answers += 1;
    this.id = `answer-${answers}`;
    this.text = "";
    this.drafting = null; // the sample shown as a draft until the vote
    this.draftText = "";
    this.cards = new Map();
    this.pending = false;
    this.el = make("article", "answer", { id: this.id, "aria-busy": "true" });
    this.browsing = browsing ? append(this.el, "details", "browsing") : null;
    if (this.browsing) {
      append(this.browsing, "summary", "browsing-summary", {}, "Browsing…");
      this.browsing.hidden = true;
    }
    this.steps = append(this.browsing ?? this.el, "ol", "steps", { "aria-label": "Tool calls" });
    this.body = append(this.el, "div", "markdown body");
    this.sources = append(this.el, "section", "references", { "aria-label": "References" });
    this.footer = append(this.el, "div", "answer-footer");
    this.problem = append(this.el, "div", "problem", { role: "alert" });
    for (const part of [this.steps, this.sources, this.footer, this.problem]) part.hidden = true;
    this.body.append(dots());
  }

  appendText(text) {
    this.text += text;
    this.schedule();
  }

  /** Several answers are being written (samples, or a consensus's members) and the vote comes
   * after them: meanwhile the first one shows as a draft, as the model writes it. */
  draft({ text, sample }) {
    if (this.text) return;
    this.drafting ??= sample;
    if (sample !== this.drafting) return;
    this.draftText += text;
    this.schedule();
  }

  call({ index, tool, argument, sample }) {
    this.card(index, tool, argument, sample);
  }

  result(item) {
    const card = this.card(item.index, item.tool, item.argument, item.sample);
    fillCard(card, item);
  }

  /** The final response (or a stored turn): the call-free answer, the trace, the sources. */
  finish(response) {
    this.pending = false;
    (response.trace ?? []).forEach((item, index) => {
      fillCard(this.card(index, item.tool, item.argument, item.sample ?? response.sample), item);
    });
    this.nameMembers(response.votes ?? []);
    this.summarizeBrowsing(true);
    const quotes = (response.quotes ?? []).map((q, i) =>
      typeof q === "string" ? { number: i + 1, text: q } : q,
    );
    const numbers = new Set(quotes.map((q) => q.number));
    const cite = (n) => {
      if (!numbers.has(n)) return null;
      const a = document.createElement("a");
      a.href = `#${this.id}-ref-${n}`;
      a.className = "cite";
      a.textContent = `[${n}]`;
      a.setAttribute("aria-label", `source ${n}`);
      return a;
    };
    this.body.classList.remove("draft");
    this.body.replaceChildren(renderMarkdown(response.answer ?? "", { cite }));
    if (!(response.answer ?? "").trim()) {
      this.body.append(make("p", "note", {}, "(The model gave no answer.)"));
    }
    for (const check of response.checks ?? []) {
      const said =
        check.kind === "value_from_error"
          ? `${check.stated} comes from a tool's error message, not from an answer.`
          : `The answer states ${check.stated}, but its program printed ${check.computed}.`;
      this.body.append(make("p", "note check", { role: "note" }, said));
    }
    this.showSources(quotes, response.references ?? []);
    this.showFooter(response);
    this.el.setAttribute("aria-busy", "false");
  }

  /** The answer was stopped by the user: what was written stays, marked as unfinished. */
  stopped() {
    this.render();
    for (const card of this.cards.values()) {
      if (card.dataset.state === "running") setState(card, "stopped", "stopped");
    }
    this.body.append(make("p", "note", {}, "Stopped."));
    this.summarizeBrowsing(true);
    this.el.setAttribute("aria-busy", "false");
  }

  /** The answer failed: say why, plainly, with a Retry button. */
  fail(message, retry) {
    this.render();
    for (const card of this.cards.values()) {
      if (card.dataset.state === "running") setState(card, "error", "no result");
    }
    this.problem.replaceChildren(make("p", "", {}, message));
    const button = append(this.problem, "button", "retry", { type: "button" });
    button.textContent = "Retry";
    button.addEventListener("click", retry);
    this.problem.hidden = false;
    this.summarizeBrowsing(true);
    this.el.setAttribute("aria-busy", "false");
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      if (this.pending) this.render();
    });
  }

  render() {
    this.pending = false;
    const drafting = !this.text && this.draftText;
    this.body.replaceChildren(renderMarkdown(drafting ? this.draftText : this.text));
    this.body.classList.toggle("draft", Boolean(drafting));
    if (this.el.getAttribute("aria-busy") === "true") this.body.append(dots());
  }

  /** A consensus's answers are its strategies, not samples: once the votes say which answer
   * each strategy wrote, the cards say so ("Python · program"). */
  nameMembers(votes) {
    const members = new Map();
    for (const vote of votes) {
      (vote.strategies ?? []).forEach((name, i) => members.set(vote.samples[i], name));
    }
    for (const [key, card] of this.cards) {
      const [sample, index] = key.split(":");
      if (index === undefined || !members.has(Number(sample))) continue;
      card.querySelector(".tool").textContent = `${card.dataset.tool} · ${members.get(Number(sample))}`;
    }
  }

  /** The card of call `index` (of one sample, when several are drawn and put to a vote). */
  card(index, tool, argument, sample = null) {
    const key = sample === null || sample === undefined ? `${index}` : `${sample}:${index}`;
    let card = this.cards.get(key);
    if (!card) {
      const label = sample === null || sample === undefined ? tool : `${tool} · sample ${sample + 1}`;
      card = makeCard(tool, argument, label);
      this.cards.set(key, card);
      const item = append(this.steps, "li");
      item.append(card);
      this.steps.hidden = false;
      this.summarizeBrowsing();
    }
    return card;
  }

  /** "Searched 1 time, read 3 pages, kept 2 quotes": what the browsing steps did, in one line
   * that opens to the steps. */
  summarizeBrowsing(done = false) {
    if (!this.browsing || !this.cards.size) return;
    const count = (tool) => [...this.cards.values()].filter((c) => c.dataset.tool === tool).length;
    const parts = [
      `searched ${plural(count("Search"), "time")}`,
      `read ${plural(count("Click"), "page")}`,
      `kept ${plural(count("Quote"), "quote")}`,
    ];
    const line = parts.join(", ");
    this.browsing.querySelector("summary").textContent = done
      ? line.charAt(0).toUpperCase() + line.slice(1)
      : `Browsing… ${line}`;
    this.browsing.hidden = false;
  }

  showSources(quotes, references) {
    if (!quotes.length) return;
    const domains = new Map();
    for (const ref of references) for (const n of ref.numbers ?? []) domains.set(n, ref.domain);
    append(this.sources, "h3", "", {}, "References");
    const list = append(this.sources, "ol", "quotes");
    for (const quote of quotes) {
      const item = append(list, "li", "quote", { id: `${this.id}-ref-${quote.number}` });
      const head = append(item, "p", "quote-head");
      append(head, "span", "quote-number", {}, `[${quote.number}]`);
      const href = safeUrl(quote.url ?? "");
      const title = quote.title || quote.url || "untitled";
      head.append(" ", href ? externalLink(href, title) : make("span", "", {}, title));
      const domain = domains.get(quote.number) ?? (href ? new URL(href).hostname : "");
      if (domain) head.append(" ", make("span", "domain", {}, domain));
      append(item, "blockquote", "", {}, quote.text ?? "");
    }
    this.sources.hidden = false;
  }

  showFooter(response) {
    const copy = append(this.footer, "button", "copy", { type: "button" }, "Copy");
    copy.setAttribute("aria-label", "Copy the answer");
    copy.addEventListener("click", () => copyText(response.answer ?? "", copy));
    const votes = (response.votes ?? []).map((v) => `${v.value ?? "no value"} ×${v.samples.length}`);
    const facts = [
      response.model,
      response.strategy,
      votes.length ? `votes: ${votes.join(", ")}` : null,
      seconds(response.timings?.total_s),
    ].filter(Boolean);
    if (facts.length) append(this.footer, "span", "meta", {}, facts.join(" · "));
    this.footer.hidden = false;
  }
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function makeCard(tool, argument, label = tool) {
  const card = make("details", "card");
  card.dataset.tool = tool;
  const summary = append(card, "summary");
  append(summary, "span", "tool", {}, label);
  append(summary, "code", "argument", {}, argument);
  append(summary, "span", "state");
  append(summary, "span", "time");
  const body = append(card, "div", "card-body");
  append(body, "p", "label", {}, "Argument");
  append(body, "pre", "card-argument", {}, argument);
  append(body, "p", "label outcome-label", {}, "Result");
  append(body, "pre", "outcome", {}, "running…");
  setState(card, "running", "running…");
  return card;
}

function fillCard(card, { result, error, duration_s: duration }) {
  const failed = error !== null && error !== undefined;
  setState(card, failed ? "error" : "ok", failed ? "error" : "ok");
  card.querySelector(".outcome-label").textContent = failed ? "Error" : "Result";
  card.querySelector(".outcome").textContent = failed ? error : (result ?? "");
  card.querySelector(".time").textContent = seconds(duration) ?? "";
}

function setState(card, state, label) {
  card.dataset.state = state;
  card.querySelector(".state").textContent = label;
}

function seconds(s) {
  if (typeof s !== "number") return null;
  if (s < 0.001) return "<1 ms";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an insecure origin): the old way, through a selected text area.
    const area = make("textarea", "visually-hidden", { readonly: "" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

function dots() {
  return make("span", "typing", { "aria-hidden": "true" }, "…");
}

function make(tag, className = "", attributes = {}, text = null) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

function append(parent, tag, className = "", attributes = {}, text = null) {
  const node = make(tag, className, attributes, text);
  parent.append(node);
  return node;
}
