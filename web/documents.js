// The documents panel: the indexed documents (for the Retrieve tool), upload and delete.

import { getJSON, request } from "./api.js";

const $ = (id) => document.getElementById(id);

export async function loadDocuments() {
  const note = $("documents-note");
  const input = $("upload");
  let documents;
  try {
    documents = await getJSON("/v1/documents");
  } catch (error) {
    $("documents").replaceChildren();
    if (error.status === 409) {
      // The server was started without a documents folder: there is nothing to upload into.
      input.disabled = true;
      note.textContent =
        "Uploads are off: AGENT_DOCUMENTS names a file, not a folder, on this server.";
    } else {
      note.textContent = `Documents can't be listed. ${error.message}`;
    }
    return false;
  }
  input.disabled = false;
  $("documents").replaceChildren(...documents.map(documentItem));
  if (!documents.length) note.textContent = "No documents yet.";
  // Until every document is searchable, look again shortly (one timer at a time).
  if (documents.some((d) => d.status === "indexing") && !pollTimer) {
    pollTimer = setTimeout(() => {
      pollTimer = null;
      loadDocuments();
    }, 1000);
  }
  return true;
}

let pollTimer = null;

const STATUS_TEXT = {
  indexing: "indexing…",
  ready: "ready",
  unreadable: "unreadable",
  "not indexed": "not indexed",
};

export function setUpDocuments() {
  const input = $("upload");
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    const note = $("documents-note");
    note.textContent = `Uploading ${file.name}…`;
    const form = new FormData();
    form.append("file", file);
    try {
      await request("/v1/documents", { method: "POST", body: form });
    } catch (error) {
      note.textContent = `${file.name} was not uploaded. ${error.message}`;
      input.value = "";
      return;
    }
    input.value = "";
    if (await loadDocuments()) note.textContent = `Uploaded ${file.name}; it is being indexed.`;
  });
}

function documentItem(document_) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  name.className = "document-name";
  name.textContent = document_.id;
  const size = document.createElement("span");
  size.className = "meta";
  size.textContent = bytes(document_.bytes);
  const status = document.createElement("span");
  status.className = `meta document-status status-${document_.status.replace(" ", "-")}`;
  status.textContent = STATUS_TEXT[document_.status] ?? document_.status;
  if (document_.status === "indexing" && document_.progress != null) {
    // A large PDF's passages take a while to embed: say how far it is.
    status.textContent = `indexing… ${Math.floor(document_.progress * 100)}%`;
  }
  if (document_.problem) status.title = document_.problem;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "delete icon-button";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Delete document: ${document_.id}`);
  remove.addEventListener("click", () => deleteDocument(document_.id));
  item.append(name, size, status, remove);
  return item;
}

async function deleteDocument(id) {
  if (!window.confirm(`Delete the document “${id}”?`)) return;
  const note = $("documents-note");
  try {
    await request(`/v1/documents/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (error) {
    note.textContent = `${id} was not deleted. ${error.message}`;
    return;
  }
  if (await loadDocuments()) note.textContent = `Deleted ${id}.`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
