// The theme chosen with the toggle (stored), else the system's: set before the page paints.
try {
  const theme = localStorage.getItem("theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
} catch {
  // Storage refused (private mode): the system's theme it is.
}
