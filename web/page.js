// The page's frame: the model's health in the header, the theme toggle, the phone-width menu,
// and the choices kept in localStorage.

import { getJSON } from "./api.js";

const $ = (id) => document.getElementById(id);
// ready: null until the first check, then whether the model was ready at the last one.
const model = { ready: null, timer: null };

/** Whether the model answered ready at the last check. */
export function isReady() {
  return model.ready === true;
}

/**
 * Show whether the model is ready (its name) in the header; while it is not, ask again every few
 * seconds. `recovered` runs when it is ready again after it was not.
 */
export async function checkHealth(recovered = () => {}) {
  clearTimeout(model.timer);
  const health = $("health");
  let wait;
  try {
    const ready = await getJSON("/readyz");
    health.textContent = ready.model;
    health.dataset.state = "ready";
    health.title = "The model is loaded";
    if (model.ready === false) recovered(); // back after an outage: the page may be stale
    model.ready = true;
    return;
  } catch (error) {
    model.ready = false;
    const loading = error.kind === "loading";
    health.textContent = loading ? "Model loading…" : "Server unreachable";
    health.dataset.state = loading ? "loading" : "down";
    health.title = error.message;
    wait = loading ? 2000 : 5000;
  }
  model.timer = setTimeout(() => checkHealth(recovered), wait);
}

function darkNow() {
  const chosen = document.documentElement.dataset.theme;
  return chosen ? chosen === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
}

export function setUpTheme() {
  const button = $("theme");
  const show = () => button.setAttribute("aria-pressed", String(darkNow()));
  button.addEventListener("click", () => {
    const theme = darkNow() ? "light" : "dark";
    document.documentElement.dataset.theme = theme;
    store("theme", theme);
    show();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", show);
  show();
}

export function closeMenu() {
  document.body.classList.remove("menu-open");
  $("menu").setAttribute("aria-expanded", "false");
}

export function setUpMenu() {
  const menu = $("menu");
  menu.addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    menu.setAttribute("aria-expanded", String(open));
    if (open) $("new-chat").focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("menu-open")) {
      closeMenu();
      menu.focus();
    }
  });
}

// Storage can be refused (private windows): the page then keeps its choices until a reload.
export function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // not kept
  }
}
