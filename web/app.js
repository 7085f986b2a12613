// The chat page: asking (streamed answers, stop, retry) and the conversation list.
// Answers are drawn by answer.js, documents by documents.js, the header and menu by page.js,
// and HTTP is api.js's.

import { AnswerView } from "./answer.js";
import { ApiError, ask, getJSON, readEvents, request, setApiKey } from "./api.js";
import { loadDocuments, setUpDocuments } from "./documents.js";
import { checkHealth, closeMenu, isReady, setUpMenu, setUpTheme, store, stored } from "./page.js";

const $ = (id) => document.getElementById(id);
const messages = $("messages");
const question = $("question");
const state = { conversationId: null, controller: null };

// ---- asking -------------------------------------------------------------------------------

async function send(text) {
  if (state.controller || !text.trim()) return;
  $("welcome").hidden = true;
  const asked = document.createElement("div");
  asked.className = "question";
  asked.textContent = text;
  const view = new AnswerView({ browsing: mode() === "webgpt" });
  messages.append(asked, view.el);
  follow(true);
  const controller = new AbortController();
  busy(controller);
  announce("Answering…");
  const body = { question: text, mode: mode() };
  const how = strategy();
  if (body.mode === "toolformer" && how) body.strategy = how;
  if (state.conversationId) body.conversation_id = state.conversationId;
  let finished = false;
  try {
    const response = await ask(body, controller.signal);
    for await (const { event, data } of readEvents(response)) {
      if (event === "answer") view.appendText(data.text);
      else if (event === "token" && data.sample !== undefined) view.draft(data);
      else if (event === "call") {
        view.call(data);
        announce(`Calling ${data.tool}…`);
      } else if (event === "result") view.result(data);
      else if (event === "error") {
        throw new ApiError("stream", `The answer could not be finished: ${data.error}`);
      } else if (event === "final") {
        view.finish(data);
        finished = true;
        state.conversationId = data.conversation_id ?? state.conversationId;
      }
      follow();
    }
    if (!finished) {
      throw new ApiError("cut", "The connection closed before the answer was finished.");
    }
    announce("Answer complete.");
    loadConversations();
    if (!isReady()) watchHealth(); // an answer came: the header can say so now
  } catch (error) {
    if (controller.signal.aborted) {
      view.stopped();
      announce("Stopped.");
    } else {
      const message = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
      view.fail(message, () => {
        asked.remove();
        view.el.remove();
        send(text);
      });
      announce(message);
      if (error.kind === "unreachable" || error.kind === "loading") watchHealth();
    }
  } finally {
    busy(null);
    follow();
  }
}

function busy(controller) {
  state.controller = controller;
  $("send").hidden = Boolean(controller);
  $("stop").hidden = !controller;
  // Focus stays in the text box while an answer streams (Escape stops it); it comes back there
  // from the Stop button, which is now hidden.
  if (!controller && [$("stop"), document.body].includes(document.activeElement)) question.focus();
}

function stop() {
  state.controller?.abort();
}

function mode() {
  return document.querySelector('input[name="mode"]:checked')?.value ?? "toolformer";
}

/** The chosen way of reasoning, or "" for the server's default. */
function strategy() {
  return $("strategy").value;
}

/** Keep the newest text in view, unless the reader has scrolled up to read. */
function follow(force = false) {
  const scroller = document.querySelector(".main");
  const near = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 160;
  if (force || near) scroller.scrollTop = scroller.scrollHeight;
}

function announce(text) {
  $("status").textContent = text;
}

// ---- conversations ------------------------------------------------------------------------

async function loadConversations() {
  const list = $("conversations");
  const note = $("conversations-note");
  let conversations;
  try {
    conversations = await getJSON("/v1/conversations?limit=100");
  } catch (error) {
    note.textContent = `Conversations can't be loaded. ${error.message}`;
    note.hidden = false;
    return;
  }
  note.textContent = conversations.length ? "" : "No conversations yet.";
  note.hidden = Boolean(conversations.length);
  list.replaceChildren(...conversations.map(conversationItem));
}

function conversationItem(conversation) {
  const title = conversation.title || "Untitled";
  const item = document.createElement("li");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "conversation";
  open.dataset.id = conversation.id;
  if (conversation.id === state.conversationId) open.setAttribute("aria-current", "true");
  const name = document.createElement("span");
  name.className = "title";
  name.textContent = title;
  const when = document.createElement("time");
  when.dateTime = conversation.updated_at;
  when.textContent = new Date(conversation.updated_at).toLocaleString([], {
    dateStyle: "short",
    timeStyle: "short",
  });
  open.append(name, when);
  open.addEventListener("click", () => openConversation(conversation.id));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete icon-button";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Delete conversation: ${title}`);
  remove.addEventListener("click", () => deleteConversation(conversation.id, title));
  item.append(open, remove);
  return item;
}

async function openConversation(id) {
  stop();
  let conversation;
  try {
    conversation = await getJSON(`/v1/conversations/${encodeURIComponent(id)}`);
  } catch (error) {
    showNote(`This conversation can't be opened. ${error.message}`);
    return;
  }
  clearMessages();
  state.conversationId = id;
  $("welcome").hidden = true;
  for (const turn of conversation.turns) {
    const asked = document.createElement("div");
    asked.className = "question";
    asked.textContent = turn.question;
    const view = new AnswerView({ browsing: turn.mode === "webgpt" });
    messages.append(asked, view.el);
    view.finish(turn);
  }
  markCurrent();
  closeMenu();
  follow(true);
  question.focus();
}

async function deleteConversation(id, title) {
  if (!window.confirm(`Delete the conversation “${title}”?`)) return;
  try {
    await request(`/v1/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    showNote(`It was not deleted. ${error.message}`);
    return;
  }
  if (id === state.conversationId) newChat();
  await loadConversations();
  announce("Conversation deleted.");
}

function newChat() {
  stop();
  clearMessages();
  state.conversationId = null;
  $("welcome").hidden = false;
  markCurrent();
  closeMenu();
  question.focus();
}

function clearMessages() {
  messages.replaceChildren($("welcome"));
}

function markCurrent() {
  for (const button of document.querySelectorAll(".conversation")) {
    if (button.dataset.id === state.conversationId) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function watchHealth() {
  checkHealth(() => {
    loadConversations();
    loadDocuments();
  });
}

function showNote(text) {
  const note = $("conversations-note");
  note.textContent = text;
  note.hidden = false;
}

// ---- API key ------------------------------------------------------------------------------

/** With API keys set, the page asks for one at the first 401 and says plainly if it is wrong. */
function setUpApiKey() {
  const form = $("key-form");
  window.addEventListener("api-key-needed", (event) => {
    $("key-note").textContent = event.detail.refused
      ? "That API key was refused. Enter the right one."
      : "This server needs an API key.";
    if (form.hidden) {
      form.hidden = false;
      $("api-key").focus();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    $("api-key").value = "";
    form.hidden = true;
    loadConversations();
    loadDocuments();
    question.focus();
  });
}

// ---- wiring -------------------------------------------------------------------------------

function setUp() {
  const fit = () => {
    question.style.height = "auto";
    question.style.height = `${Math.min(question.scrollHeight, 200)}px`;
  };
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value;
    if (!text.trim() || state.controller) return;
    question.value = "";
    fit();
    send(text);
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "Escape" && state.controller) {
      stop();
    }
  });
  question.addEventListener("input", fit);
  for (const example of document.querySelectorAll("#welcome .example")) {
    example.addEventListener("click", () => {
      question.value = example.dataset.question;
      $("composer").requestSubmit();
    });
  }
  $("stop").addEventListener("click", stop);
  $("new-chat").addEventListener("click", newChat);
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.checked = radio.value === (stored("mode") ?? "toolformer");
    radio.addEventListener("change", () => {
      store("mode", radio.value);
      $("strategy").disabled = mode() !== "toolformer";
    });
  }
  $("strategy").value = stored("strategy") ?? "";
  $("strategy").disabled = mode() !== "toolformer";
  $("strategy").addEventListener("change", () => store("strategy", strategy()));
  setUpTheme();
  setUpMenu();
  setUpDocuments();
  setUpApiKey();
  loadConversations();
  loadDocuments();
  watchHealth();
  question.focus();
}

setUp();
