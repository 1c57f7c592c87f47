// The filegate console. No framework and no build step: this file is served as it is.
//
// Rules it keeps, because it runs on filegate's own origin:
// - the API key lives in this tab's sessionStorage only and goes out as a header, never in a URL or cookie;
// - every value from the server is shown with textContent, never parsed as HTML;
// - nothing is loaded from another origin (the Content-Security-Policy would refuse it anyway).
"use strict";

const KEY = "filegate.key";
const UPLOAD_PREFIX = "filegate.upload.";
const CHUNK = 8 * 1024 * 1024;
const $ = (id) => document.getElementById(id);

let project = null;
let nextPageToken = "";
let refreshTimer = null;

// --- talking to filegate ---------------------------------------------------------------------------

function key() {
  return sessionStorage.getItem(KEY) || "";
}

/** Why a reply failed, in the server's words. */
async function failure(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ "x-goog-api-key": key() }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    const error = new Error(await failure(response));
    error.status = response.status;
    throw error;
  }
  return response;
}

async function json(path, options) {
  return (await api(path, options)).json();
}

// --- small helpers -----------------------------------------------------------------------------------

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function bytes(n) {
  const value = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  let scaled = value;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? scaled : scaled.toFixed(1)} ${units[unit]}`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function hexOf(base64) {
  if (!base64) return "";
  return Array.from(atob(base64), (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, className, onClick, accessibleName) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (className) b.className = className;
  if (accessibleName) b.setAttribute("aria-label", accessibleName);
  b.addEventListener("click", onClick);
  return b;
}

// --- signing in and out ----------------------------------------------------------------------------

async function signIn(candidate) {
  sessionStorage.setItem(KEY, candidate);
  try {
    project = await json("/console/api/project");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    const refused = [400, 401, 403].includes(error.status);
    say(refused ? `That API key is not valid (${error.message}).` : error.message, true);
    return false;
  }
  $("sign-in-view").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who").textContent = `Project ${project.project}${project.operator ? " (operator)" : ""}`;
  $("sign-out").hidden = false;
  $("operator-tab").hidden = !project.operator;
  say("");
  showQuota(project);
  await loadFiles(true).catch(() => {}); // said in the status line
  refreshTimer = setInterval(refresh, 3000);
  return true;
}

function signOut() {
  // Forget everything this tab kept: the key and the uploads it could resume.
  Object.keys(sessionStorage).filter((k) => k.startsWith("filegate.")).forEach((k) => sessionStorage.removeItem(k));
  clearInterval(refreshTimer);
  project = null;
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-view").hidden = false;
  $("api-key").value = "";
  $("files").tBodies[0].replaceChildren();
  say("Signed out.");
  $("api-key").focus();
}

function show(view) {
  for (const tab of document.querySelectorAll(".tab")) {
    const current = tab.dataset.view === view;
    if (current) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `${view}-view`;
  $(`${view}-title`).focus();
  if (view === "operator") loadOperator();
}

// --- quota -----------------------------------------------------------------------------------------

function showQuota(p) {
  const used = p.usage.usedBytes;
  const quota = p.limits.quotaBytes;
  $("bytes-meter").max = quota;
  $("bytes-meter").value = used;
  $("bytes-text").textContent = `${bytes(used)} of ${bytes(quota)}`;
  $("files-meter").max = p.limits.maxFiles;
  $("files-meter").value = p.usage.files;
  $("files-text").textContent = `${p.usage.files} of ${p.limits.maxFiles}`;
}

async function refresh() {
  try {
    project = await json("/console/api/project");
    showQuota(project);
    await loadFiles(true, true);
  } catch (error) {
    // A key revoked meanwhile: sign out, and say why.
    if ([400, 401, 403].includes(error.status)) {
      signOut();
      say("The API key is no longer valid; signed out.", true);
    }
  }
}

// --- files -----------------------------------------------------------------------------------------

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.name = file.name;
  row.dataset.display = (file.displayName || file.name).toLowerCase();
  cell(row, file.displayName || file.name, "name");
  cell(row, bytes(file.sizeBytes));
  cell(row, file.mimeType);
  cell(row, file.state, "state");
  cell(row, when(file.createTime));
  cell(row, when(file.expirationTime));
  cell(row, hexOf(file.sha256Hash), "hash");
  cell(row, file.storageUri || "filegate");
  const actions = cell(row, "", "actions");
  const label = file.displayName || file.name;
  if (file.state === "ACTIVE") {
    actions.appendChild(button("Download", "secondary", () => download(file), `Download ${label}`));
  }
  actions.appendChild(button("Delete", "danger", () => remove(file, label), `Delete ${label}`));
  return row;
}

async function loadFiles(fromStart, quietly = false) {
  const params = new URLSearchParams({ pageSize: "50" });
  if (!fromStart && nextPageToken) params.set("pageToken", nextPageToken);
  let page;
  try {
    page = await json(`/v1beta/files?${params}`);
  } catch (error) {
    if (!quietly) say(error.message, true);
    throw error;
  }
  const body = $("files").tBodies[0];
  const files = page.files || [];
  if (fromStart) {
    // The first page replaces the rows it covers; rows of later pages already loaded stay.
    const names = new Set(files.map((f) => f.name));
    const rows = files.map(fileRow);
    const older = Array.from(body.rows).filter((r) => !names.has(r.dataset.name) && rows.length >= 50);
    body.replaceChildren(...rows, ...older);
    if (!quietly || !nextPageToken) nextPageToken = page.nextPageToken || "";
  } else {
    files.forEach((f) => body.appendChild(fileRow(f)));
    nextPageToken = page.nextPageToken || "";
  }
  $("more").hidden = !nextPageToken;
  $("no-files").hidden = body.rows.length > 0;
  applyFilter();
}

function applyFilter() {
  const wanted = $("filter").value.trim().toLowerCase();
  for (const row of $("files").tBodies[0].rows) row.hidden = wanted !== "" && !row.dataset.display.includes(wanted);
}

async function download(file) {
  try {
    const { url } = await json(`/console/api/${file.name}:link`, { method: "POST" });
    // The browser's own download: streamed to disk, an attachment never shown on this origin.
    const link = document.createElement("a");
    link.href = url;
    link.download = file.displayName || file.name.replace("files/", "");
    document.body.appendChild(link);
    link.click();
    link.remove();
  } catch (error) {
    say(error.message, true);
  }
}

async function remove(file, label) {
  if (!window.confirm(`Delete ${label}? This cannot be undone.`)) return;
  try {
    await api(`/v1beta/${file.name}`, { method: "DELETE" });
    say(`Deleted ${label}.`);
    await refresh();
  } catch (error) {
    say(error.message, true);
  }
}

// --- uploads: the resumable protocol, in 8 MiB chunks ----------------------------------------------

function resumeKey(file) {
  return `${UPLOAD_PREFIX}${file.name}:${file.size}:${file.lastModified}`;
}

/** Sends one chunk with XMLHttpRequest, which reports upload progress (fetch does not). */
function sendChunk(url, headers, body, onProgress, transfer) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    transfer.xhr = xhr;
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => reject(new Error("The connection failed."));
    xhr.onabort = () => reject(new Error("Cancelled."));
    xhr.send(body);
  });
}

async function startUpload(file) {
  const response = await api("/upload/v1beta/files", {
    method: "POST",
    headers: {
      "X-Goog-Upload-Protocol": "resumable",
      "X-Goog-Upload-Command": "start",
      "X-Goog-Upload-Header-Content-Length": String(file.size),
      "X-Goog-Upload-Header-Content-Type": file.type || "application/octet-stream",
      "content-type": "application/json",
    },
    body: JSON.stringify({ file: { displayName: file.name } }),
  });
  return response.headers.get("x-goog-upload-url");
}

/** Where a remembered upload stands: its received offset, or null if it cannot go on. */
async function queryUpload(url) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "x-goog-api-key": key(), "X-Goog-Upload-Command": "query" },
  });
  if (!response.ok || response.headers.get("x-goog-upload-status") !== "active") return null;
  return Number(response.headers.get("x-goog-upload-size-received") || 0);
}

function transferItem(title) {
  const item = document.createElement("li");
  const name = document.createElement("strong");
  name.textContent = title;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${title}`);
  const detail = document.createElement("span");
  item.append(name, bar, detail);
  return { item, bar, detail };
}

async function upload(file) {
  const { item, bar, detail } = transferItem(file.name);
  const transfer = { cancelled: false, xhr: null, url: null };
  const cancel = button("Cancel", "danger", async () => {
    transfer.cancelled = true;
    if (transfer.xhr) transfer.xhr.abort();
    if (transfer.url) {
      await fetch(transfer.url, { method: "POST", headers: { "x-goog-api-key": key(), "X-Goog-Upload-Command": "cancel" } });
    }
    sessionStorage.removeItem(resumeKey(file));
    detail.textContent = "Cancelled.";
    cancel.remove();
  }, `Cancel the upload of ${file.name}`);
  item.appendChild(cancel);
  $("uploads").prepend(item);
  try {
    let offset = 0;
    const remembered = sessionStorage.getItem(resumeKey(file));
    if (remembered) {
      const received = await queryUpload(remembered);
      if (received !== null) {
        transfer.url = remembered;
        offset = received;
        detail.textContent = `Resuming at ${bytes(offset)}.`;
      }
    }
    if (!transfer.url) {
      transfer.url = await startUpload(file);
      sessionStorage.setItem(resumeKey(file), transfer.url);
    }
    const started = performance.now();
    const startOffset = offset;
    let done = null;
    do {
      const end = Math.min(offset + CHUNK, file.size);
      const last = end === file.size;
      const chunkStart = offset;
      const xhr = await sendChunk(
        transfer.url,
        {
          "x-goog-api-key": key(),
          "X-Goog-Upload-Command": last ? "upload, finalize" : "upload",
          "X-Goog-Upload-Offset": String(offset),
        },
        file.slice(offset, end),
        (loaded) => {
          const sent = chunkStart + loaded;
          const seconds = (performance.now() - started) / 1000;
          const rate = (sent - startOffset) / Math.max(seconds, 0.001);
          const left = rate > 0 ? Math.ceil((file.size - sent) / rate) : 0;
          bar.value = file.size ? (100 * sent) / file.size : 100;
          detail.textContent = `${bytes(sent)} of ${bytes(file.size)}, ${bytes(rate)}/s, ${left} s left`;
        },
        transfer,
      );
      if (xhr.status !== 200) throw new Error(JSON.parse(xhr.responseText || "{}").error?.message || `HTTP ${xhr.status}`);
      offset = end;
      if (last) done = JSON.parse(xhr.responseText).file;
    } while (!done && !transfer.cancelled);
    sessionStorage.removeItem(resumeKey(file));
    bar.value = 100;
    detail.textContent = `Uploaded: ${done.name}, ${done.state}.`;
    cancel.remove();
    await refresh();
  } catch (error) {
    if (!transfer.cancelled) {
      detail.textContent = `Failed: ${error.message}`;
      detail.className = "error";
    }
  }
}

// --- imports ---------------------------------------------------------------------------------------

async function startImport(url, model) {
  const { item, bar, detail } = transferItem(url);
  $("imports").prepend(item);
  try {
    const response = await fetch("/v1/files", {
      method: "POST",
      headers: { authorization: `Bearer ${key()}`, "content-type": "application/json" },
      body: JSON.stringify({ source_url: url, model }),
    });
    if (!response.ok) throw new Error(await failure(response));
    let task = await response.json();
    item.querySelector("strong").textContent = `${task.filename || url} (${task.id})`;
    // Long-polls: each look answers as soon as the task changes, or after 20 s.
    while (task.status === "pending" || task.status === "processing") {
      const got = task.progress.received_bytes;
      const total = task.progress.total_bytes;
      bar.value = total ? (100 * got) / total : 0;
      detail.textContent = `${task.status}: ${bytes(got)}${total ? ` of ${bytes(total)}` : ""}`;
      const next = await fetch(`/v1/files/${task.id}?wait=20`, { headers: { authorization: `Bearer ${key()}` } });
      if (!next.ok) throw new Error(await failure(next));
      task = await next.json();
    }
    if (task.status === "ready") {
      bar.value = 100;
      detail.textContent = `Ready: ${bytes(task.bytes)}, ${task.gemini_file.name}.`;
    } else {
      detail.textContent = `Failed: ${task.error ? `${task.error.message} (${task.error.code})` : task.status}`;
      detail.className = "error";
    }
    await refresh();
  } catch (error) {
    detail.textContent = `Failed: ${error.message}`;
    detail.className = "error";
  }
}

// --- the operator view -----------------------------------------------------------------------------

async function loadOperator() {
  try {
    const { projects } = await json("/console/api/projects");
    const rows = projects.map((p) => {
      const row = document.createElement("tr");
      cell(row, p.project);
      cell(row, bytes(p.usage.usedBytes));
      cell(row, p.usage.files);
      cell(row, p.usage.openUploads);
      cell(row, p.usage.activeImports);
      return row;
    });
    $("projects").tBodies[0].replaceChildren(...rows);
    const { keys } = await json("/console/api/keys");
    const keyRows = keys.map((k) => {
      const row = document.createElement("tr");
      row.dataset.id = k.id;
      cell(row, k.id, "hash");
      cell(row, k.project);
      cell(row, k.label);
      cell(row, when(k.createTime));
      cell(row, when(k.lastUsedTime));
      cell(row, when(k.revokeTime));
      const actions = cell(row, "", "actions");
      if (!k.revokeTime) {
        actions.appendChild(button("Revoke", "danger", () => revoke(k), `Revoke key ${k.id}`));
      }
      return row;
    });
    $("keys").tBodies[0].replaceChildren(...keyRows);
  } catch (error) {
    say(error.message, true);
  }
}

async function revoke(k) {
  if (!window.confirm(`Revoke key ${k.id} of ${k.project}? Clients using it will be refused.`)) return;
  try {
    await api(`/console/api/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
    say(`Revoked key ${k.id}.`);
    await loadOperator();
  } catch (error) {
    say(error.message, true);
  }
}

// --- wiring ----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    await signIn($("api-key").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => show(tab.dataset.view));
  $("filter").addEventListener("input", applyFilter);
  $("refresh").addEventListener("click", refresh);
  $("more").addEventListener("click", () => loadFiles(false));
  $("file-input").addEventListener("change", (event) => {
    Array.from(event.target.files).forEach(upload);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    Array.from(event.dataTransfer.files).forEach(upload);
  });
  $("import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startImport($("import-url").value.trim(), $("import-model").value.trim());
    $("import-url").value = "";
  });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await json("/console/api/keys", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ project: $("key-project").value.trim(), label: $("key-label").value.trim() }),
      });
      $("new-key").hidden = false;
      $("new-key").textContent = `New key for ${created.project} (id ${created.id}), shown only now: ${created.key}`;
      await loadOperator();
    } catch (error) {
      say(error.message, true);
    }
  });
  if (key()) signIn(key());
  else $("api-key").focus();
});
